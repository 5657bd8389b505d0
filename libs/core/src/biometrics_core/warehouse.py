"""Names in the warehouse, shared by the stages that read or write it (the schema itself is the
load stage's Alembic migrations)."""

from __future__ import annotations

import datetime as dt

READINGS_TABLE = "biometric_readings"
DAILY_METRICS_TABLE = "daily_metrics"
DEAD_LETTERS_TABLE = "etl_dead_letters"
RUNS_TABLE = "etl_runs"
TABLES = (READINGS_TABLE, DAILY_METRICS_TABLE, DEAD_LETTERS_TABLE, RUNS_TABLE)

DEAD_LETTER_STATUSES = ("pending", "replayed", "discarded")


def partition_name(day: dt.date) -> str:
    """The PostgreSQL partition of ``biometric_readings`` holding one day."""
    return f"{READINGS_TABLE}_p{day:%Y%m%d}"
