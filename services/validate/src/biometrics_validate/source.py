"""The source side of the reconciliation: how many readings of the day exist before the pipeline.

Database rows are counted again, directly in the application database, so a row the extract
missed shows up as a difference. Vendor files have no database to ask: their row counts come from
the extract manifest left in staging.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from biometrics_core.errors import InputError
from biometrics_core.manifest import manifest_path, required_upstream_manifest
from biometrics_core.schemas import DATABASE_SOURCE
from biometrics_core.source import check_source, on_day, source_table
from biometrics_core.staging import Staging

def database_rows(engine: Engine, day: dt.date) -> int:
    """``raw_biometric_data`` rows with ``created_at`` in [D, D+1), counted by the database."""
    check_source(engine)
    query = sa.select(sa.func.count()).select_from(source_table).where(on_day(engine, day))
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def extracted_rows(staging: Staging, day: dt.date) -> dict[str, int]:
    """Rows per source the extract staged for the day (``details.rows_by_source`` of its manifest)."""
    rel = manifest_path("extract", "readings")
    manifest = required_upstream_manifest(staging, "extract", day, "vendor row counts come from its manifest")
    details = manifest.get("details")
    by_source = details.get("rows_by_source") if isinstance(details, dict) else None
    if not isinstance(by_source, dict) or not all(type(v) is int and 0 <= v < 2**63 for v in by_source.values()):
        raise InputError(f"{staging.uri(rel)} has no details.rows_by_source counts")
    return by_source


def source_rows(database: int, extracted: dict[str, int]) -> dict[str, int]:
    """The day's source rows: the database's own count, each vendor's as extracted."""
    return {DATABASE_SOURCE: database, **{name: n for name, n in extracted.items() if name != DATABASE_SOURCE}}
