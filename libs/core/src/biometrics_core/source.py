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


def on_day(engine: Engine, day: dt.date) -> sa.ColumnElement[bool]:
    """The condition that a source row's ``created_at`` is on ``day`` (UTC), as this database compares.

    SQLite keeps times as text (SQLAlchemy writes ``YYYY-MM-DD HH:MM:SS.ffffff``, SQLite's own
    ``CURRENT_TIMESTAMP`` ``YYYY-MM-DD HH:MM:SS``), compared as text: against the day's dates alone,
    every form that starts with the date is on it. A bound of ``D 00:00:00.000000`` sorted
    ``D 00:00:00`` before the day, so that midnight reading was in neither day."""
    created_at = source_table.c.created_at
    if engine.dialect.name == "sqlite":
        as_text = sa.type_coerce(created_at, sa.Text)
        return sa.and_(as_text >= day.isoformat(), as_text < (day + dt.timedelta(days=1)).isoformat())
    start, end = day_window(day)
    return sa.and_(created_at >= start, created_at < end)
