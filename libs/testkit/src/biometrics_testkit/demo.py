"""``biometrics-demo``: the daily job end to end on the embedded default, narrated.

Local processes (the stage console scripts, exactly as the images run them), a local staging
folder, a SQLite source database and warehouse, and a generated sample day.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import time
from pathlib import Path

import click

from . import harness, sample

STAGES = (("extract", "readings"), ("transform", "readings"), ("load", "readings"), ("validate", "readings"),
          ("backup", "create"))


def run_stage(stage: str, command: str, day: dt.date, staging: Path, env: dict) -> dict:
    result = harness.run_stage(stage, command, "--date", day.isoformat(), "--staging-path", f"file://{staging}",
                               env=env, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise click.ClickException(f"biometrics-{stage} {command} exited with {result.returncode}")
    return result.manifest


@click.command(name="biometrics-demo")
@click.option("--dir", "workdir", default="demo-output", show_default=True, type=click.Path(path_type=Path),
              help="Where the demo keeps its databases and staging folder (recreated).")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Data day (default: yesterday, UTC).")
@click.option("--users", default=3000, show_default=True)
def main(workdir: Path, day: dt.datetime | None, users: int) -> None:
    """Run the daily biometric job end to end on the embedded default and summarise it."""
    day_ = day.date() if day else dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    workdir = workdir.absolute()
    shutil.rmtree(workdir, ignore_errors=True)
    staging = workdir / "staging" / "biometric_daily_etl" / day_.isoformat()
    source_url, warehouse_url = f"sqlite:///{workdir / 'app.db'}", f"sqlite:///{workdir / 'warehouse.db'}"
    started = time.monotonic()

    click.echo(f"BIOMETRICS daily ETL demo for {day_} in {workdir}")
    generated = sample.generate_day(day_, users=users)
    workdir.mkdir(parents=True)
    rows = sample.write_source(source_url, generated.database)
    files = sample.write_vendor_files(staging / "inbox", day_, generated.vendors)
    click.echo(f"  sample data: {rows} rows in the app database ({users} users, all 8 metrics, every kind of bad "
               f"record), {len(files)} vendor files ({', '.join(generated.vendors)})")

    env = {"BIOMETRICS_DB_URL": source_url, "BIOMETRICS_WAREHOUSE_URL": warehouse_url}  # added to os.environ
    manifests = {}
    for stage, command in STAGES:
        m = run_stage(stage, command, day_, staging, env)
        manifests[stage] = m
        rejected = f", rejected {m['rows_rejected_total']}" if m["rows_rejected_total"] else ""
        click.echo(f"  {stage:<9} {m['rows_in']:>8} rows in, {m['rows_out']:>8} rows out{rejected}"
                   f"  ({m['duration_seconds']:.2f} s)")

    t = manifests["transform"]
    click.echo("  rejects by reason: " + ", ".join(f"{k}={v}" for k, v in sorted(t["rows_rejected"].items())))
    checks = manifests["validate"]["details"].get("checks", [])
    passed = [c["name"] for c in checks if c.get("passed")]
    click.echo(f"  checks passed: {len(passed)}/{len(checks)} ({', '.join(passed)})")
    backup = manifests["backup"]["outputs"]
    click.echo(f"  backup: {backup[0] if backup else '-'}")
    click.echo(f"  warehouse: {warehouse_url}  (try: sqlite3 {workdir / 'warehouse.db'} "
               "'select metric_type, count(*), round(avg(value),1) from daily_metrics group by 1')")
    click.echo(f"done in {time.monotonic() - started:.1f} s")
