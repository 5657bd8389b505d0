"""The application's readings table as the stages read it (the app owns it; the pipeline only reads).

Extract stages its rows and validate counts them again, so both must pick the same day the same way.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .dates import day_window
from .errors import ConfigError

SOURCE_TABLE = "raw_biometric_data"
SOURCE_COLUMNS = ("reading_id", "user_id", "device_id", "metric_type", "value", "unit", "created_at", "ingested_at")

source_table = sa.Table(
    SOURCE_TABLE, sa.MetaData(),
    sa.Column("reading_id", sa.BigInteger), sa.Column("user_id", sa.BigInteger), sa.Column("device_id", sa.Text),
    sa.Column("metric_type", sa.Text), sa.Column("value", sa.Float(precision=53)), sa.Column("unit", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)), sa.Column("ingested_at", sa.DateTime(timezone=True)),
)


def check_source(engine: Engine) -> None:
    if not sa.inspect(engine).has_table(SOURCE_TABLE):
        raise ConfigError(f"the application database has no table {SOURCE_TABLE}")


def day_bounds(engine: Engine, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The day's [start, end) in the form the database compares ``created_at`` with."""
    start, end = day_window(day)
    if engine.dialect.name == "sqlite":  # SQLite keeps naive UTC text: compare like with like
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return start, end
