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
    start, end = day_window(day)
    # timestamps as naive UTC text, which Arrow parses without guessing offsets
    select = (f"SELECT reading_id, user_id, device_id, metric_type, value, unit, "
              f"created_at AT TIME ZONE 'UTC', ingested_at AT TIME ZONE 'UTC' FROM {SOURCE_TABLE} "
              f"WHERE created_at >= '{start.isoformat()}' AND created_at < '{end.isoformat()}'")
    csv_path = scratch / "source.csv"
    with csv_path.open("wb") as out:
        db.copy_out(engine, f"COPY ({select}) TO STDOUT (FORMAT csv)", out)
    log.info("copied the day out of the application database: %.1f MB", csv_path.stat().st_size / 1e6)
    # a block of about batch_size rows (~70 bytes a row) keeps memory bounded by the batch size
    read_options = pacsv.ReadOptions(column_names=list(_COLUMNS), block_size=max(1 << 20, batch_size * 96))
    convert = pacsv.ConvertOptions(column_types=_NAIVE, strings_can_be_null=True, null_values=[""],
                                   quoted_strings_can_be_null=False)
    try:
        with pacsv.open_csv(csv_path, read_options=read_options, convert_options=convert) as reader:
            for batch in reader:
                yield _with_source(batch)
    finally:
        csv_path.unlink(missing_ok=True)


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
