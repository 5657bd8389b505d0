"""Read one day of ``raw_biometric_data`` from the application database as Arrow batches.

PostgreSQL takes the bulk path: ``COPY (SELECT …) TO STDOUT`` into a local CSV file, parsed by
Arrow's multi-threaded CSV reader in blocks, so memory stays bounded whatever the day's volume.
Other databases (SQLite for the embedded default) stream through SQLAlchemy in batches.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from biometrics_core import db
from biometrics_core.dates import day_window
from biometrics_core.errors import ConfigError
from biometrics_core.schemas import DATABASE_SOURCE, READINGS

log = logging.getLogger(__name__)

SOURCE_TABLE = "raw_biometric_data"
_COLUMNS = ("reading_id", "user_id", "device_id", "metric_type", "value", "unit", "created_at", "ingested_at")
_NAIVE = pa.schema([(f.name, pa.timestamp("us") if pa.types.is_timestamp(f.type) else f.type)
                    for f in READINGS if f.name in _COLUMNS])

_source = sa.Table(
    SOURCE_TABLE, sa.MetaData(),
    sa.Column("reading_id", sa.BigInteger), sa.Column("user_id", sa.BigInteger), sa.Column("device_id", sa.Text),
    sa.Column("metric_type", sa.Text), sa.Column("value", sa.Float(precision=53)), sa.Column("unit", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)), sa.Column("ingested_at", sa.DateTime(timezone=True)),
)


def _with_source(batch: pa.RecordBatch) -> pa.RecordBatch:
    arrays = [batch.column(name).cast(READINGS.field(name).type) for name in _COLUMNS]
    arrays.append(pa.array([DATABASE_SOURCE] * batch.num_rows, pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=READINGS)


def check_source(engine: Engine) -> None:
    if not sa.inspect(engine).has_table(SOURCE_TABLE):
        raise ConfigError(f"the application database has no table {SOURCE_TABLE}")


def read_day(engine: Engine, day: dt.date, batch_size: int, scratch: Path) -> Iterator[pa.RecordBatch]:
    check_source(engine)
    if db.is_postgres(engine):
        yield from _read_postgres(engine, day, batch_size, scratch)
    else:
        yield from _read_generic(engine, day, batch_size)


def _read_postgres(engine: Engine, day: dt.date, batch_size: int, scratch: Path) -> Iterator[pa.RecordBatch]:
    """ADBC's PostgreSQL driver runs ``COPY … TO STDOUT (FORMAT binary)`` and decodes it into Arrow
    in C: no text formatting on the server, no parsing in Python."""
    import adbc_driver_postgresql.dbapi as adbc

    start, end = day_window(day)
    select = (f"SELECT {', '.join(_COLUMNS)} FROM {SOURCE_TABLE} "
              f"WHERE created_at >= '{start.isoformat()}' AND created_at < '{end.isoformat()}'")
    uri = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with adbc.connect(uri) as conn, conn.cursor() as cursor:
        cursor.execute(select)
        for batch in cursor.fetch_record_batch():
            yield _with_source(batch)


def _read_generic(engine: Engine, day: dt.date, batch_size: int) -> Iterator[pa.RecordBatch]:
    start, end = day_window(day)
    if engine.dialect.name == "sqlite":  # SQLite keeps naive UTC text: compare like with like
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    query = (sa.select(*[_source.c[name] for name in _COLUMNS])
             .where(_source.c.created_at >= start, _source.c.created_at < end)
             .order_by(_source.c.reading_id))
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(query)
        while rows := result.fetchmany(batch_size):
            columns = list(zip(*rows))
            arrays = []
            for name, values in zip(_COLUMNS, columns):
                if name in ("created_at", "ingested_at"):
                    values = [v.astimezone(dt.timezone.utc).replace(tzinfo=None) if v.tzinfo else v for v in values]
                arrays.append(pa.array(values, type=_NAIVE.field(name).type))
            yield _with_source(pa.RecordBatch.from_arrays(arrays, schema=_NAIVE))
