"""``biometrics-sample``: write a seeded sample day into a source database and a vendor inbox."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from . import sample


@click.command(name="biometrics-sample")
@click.option("--date", "day", required=True, type=click.DateTime(["%Y-%m-%d"]), help="The UTC day to generate.")
@click.option("--db-url", envvar="BIOMETRICS_DB_URL", required=True, help="Source database (default $BIOMETRICS_DB_URL).")
@click.option("--inbox", type=click.Path(file_okay=False, path_type=Path), help="Vendor inbox folder to fill.")
@click.option("--users", default=3000, show_default=True, help="Number of users.")
@click.option("--readings-per-user", default=30, show_default=True)
@click.option("--seed", default=42, show_default=True)
@click.option("--replace/--append", default=True, show_default=True, help="Recreate the source table first.")
def main(day: dt.datetime, db_url: str, inbox: Path | None, users: int, readings_per_user: int, seed: int,
         replace: bool) -> None:
    """Generate a realistic day (every metric and unit, every kind of bad record, vendor files)."""
    generated = sample.generate_day(day.date(), users=users, readings_per_user=readings_per_user, seed=seed)
    rows = sample.write_source(db_url, generated.database, replace=replace)
    files = sample.write_vendor_files(inbox, day.date(), generated.vendors) if inbox else []
    click.echo(json.dumps({"date": day.date().isoformat(), "source_rows": rows,
                           "vendor_files": [str(f) for f in files],
                           "vendor_rows": {k: v.num_rows for k, v in generated.vendors.items()}}))
