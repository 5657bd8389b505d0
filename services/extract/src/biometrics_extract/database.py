"""Stage one day of ``raw_biometric_data`` from the application database as Parquet.

PostgreSQL takes the bulk path: binary ``COPY (SELECT …) TO STDOUT`` decoded into Arrow batches by
ADBC, over parallel slices of the day; memory stays bounded by the batches whatever the volume.
Other databases (SQLite for the embedded default) stream through SQLAlchemy in batches.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from biometrics_core import db
from biometrics_core.dates import day_window
from biometrics_core.errors import InputError
from biometrics_core.schemas import DATABASE_SOURCE, READINGS
from biometrics_core.source import SOURCE_COLUMNS, SOURCE_TABLE, on_day, source_table

log = logging.getLogger(__name__)

_NAIVE = pa.schema([(f.name, pa.timestamp("us") if pa.types.is_timestamp(f.type) else f.type)
                    for f in READINGS if f.name in SOURCE_COLUMNS])


_SOURCE = pa.scalar(DATABASE_SOURCE, pa.string())
# Parquet row groups of at least this many rows: the driver's batches are small (bounded memory),
# and a row group per batch would cost the writer and every reader of the file (about 1.3 x here)
ROW_GROUP_ROWS = 262_144
# Parquet options of every staged readings file. Dictionaries only where values repeat: on ids,
# times and values the writer would build one, overflow it and fall back, which costs about
# 15 % of the write and makes the file larger, not smaller. Device ids too (three per user: a
# row group of 262,144 rows holds about 105 k of them here, past the 1 MB dictionary page, so the
# writer fell back to plain in every group): without one, the half day's write 1.6-1.95 -> 1.43
# CPU-s and the file 3 % smaller. Ids and times are delta-encoded: a day's rows come in created_at
# order, so the deltas are small. At 10 M rows: the writing 3.1 -> 2.6 CPU-s, files 15 % smaller,
# and DuckDB decodes these columns 3 x faster in every transform pass.
# Min/max statistics only on the numbers and times (what a reader could prune row groups by): the
# strings' cost 15 % of the write (a half day 1.35 -> 1.15 CPU-s) and no reader uses them.
WRITE_OPTIONS = {"compression": "zstd", "use_dictionary": ["source", "metric_type", "unit"],
                 "write_statistics": [f.name for f in READINGS if not pa.types.is_string(f.type)],
                 "column_encoding": {name: "DELTA_BINARY_PACKED"
                                     for name in ("reading_id", "user_id", "created_at", "ingested_at")}}


# PostgreSQL's earliest time (4713 BC), in microseconds since 1970. ADBC decodes 'infinity',
# '-infinity' and the times past Arrow's end (year 294247, short of PostgreSQL's 294276) without a
# word, wrapped around to before it; a reading's time cannot be any of them.
_EARLIEST_POSTGRES_TIME_US = -210_866_803_200_000_000


def _with_source(batch: pa.RecordBatch, check_text: bool = False) -> pa.RecordBatch:
    """The batch in the staged schema. ``check_text``: the source's text may not be UTF-8 (a
    SQL_ASCII database hands its bytes over as they are), and the transform could not read it."""
    arrays = []
    for name in SOURCE_COLUMNS:
        column = batch.column(name)
        try:  # a column of another type than the contract's (text ids, say) is the source's to fix
            column = column.cast(READINGS.field(name).type)
            if check_text and pa.types.is_string(column.type):
                column.validate(full=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise _breaks_schema(f"column {name}: {str(exc).splitlines()[0][:200]}") from None
        if pa.types.is_timestamp(column.type):
            _refuse_wrapped_times(batch, name, column)
        arrays.append(column)
    arrays.append(pa.repeat(_SOURCE, batch.num_rows))
    return pa.RecordBatch.from_arrays(arrays, schema=READINGS)


def _refuse_wrapped_times(batch: pa.RecordBatch, name: str, column: pa.Array) -> None:
    earliest = pc.min(column)
    if not earliest.is_valid or earliest.value >= _EARLIEST_POSTGRES_TIME_US:
        return
    wrapped = pc.less(column.cast(pa.int64()), _EARLIEST_POSTGRES_TIME_US)
    ids = batch.column("reading_id").filter(wrapped)
    more = f" and {len(ids) - 1} more" if len(ids) > 1 else ""
    raise _breaks_schema(f"column {name} of reading_id {ids[0]}{more}: 'infinity', '-infinity' or a time past "
                         "the year 294246, which no reading has and Arrow cannot hold")


def ids_are_unique(engine: Engine) -> bool:
    """Whether the source itself guarantees one row per ``reading_id``: its primary key, a unique
    constraint or a valid, non-partial unique index on that column alone, an integer column, of a
    table without inheritance children. The application's table has one; a copy, a view or a
    replica made without it may hold two readings under one id, which the transform must then look
    for (the warehouse's key would refuse the whole day). Text ids unique as text ('1', '01') are
    one id once cast, and a parent's key does not cover its children's rows, which the extract reads."""
    inspector = sa.inspect(engine)
    column = next((c for c in inspector.get_columns(SOURCE_TABLE) if c["name"] == "reading_id"), None)
    if column is None or not isinstance(column["type"], sa.Integer):
        return False
    if db.is_postgres(engine) and _has_inheritance_children(engine):
        return False
    alone = ["reading_id"]
    if (inspector.get_pk_constraint(SOURCE_TABLE) or {}).get("constrained_columns") == alone:
        return True
    if any(c["column_names"] == alone for c in inspector.get_unique_constraints(SOURCE_TABLE)):
        return True
    return any(index.get("unique") and index["column_names"] == alone and _covers_every_row(index)
               for index in inspector.get_indexes(SOURCE_TABLE))


def _covers_every_row(index: dict) -> bool:
    """Not a partial index, nor an invalid one (left by a CREATE UNIQUE INDEX CONCURRENTLY that failed)."""
    options = index.get("dialect_options", {})
    return not options.get("postgresql_invalid") and not any(
        name.endswith("_where") and value is not None for name, value in options.items())


def _has_inheritance_children(engine: Engine) -> bool:
    """A plain table that others inherit from (a partitioned table's key covers its partitions)."""
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent "
            "WHERE i.inhparent = to_regclass(:table) AND c.relkind = 'r')"), {"table": SOURCE_TABLE}).scalar()


def _text_may_not_be_utf8(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT pg_encoding_to_char(encoding) FROM pg_database "
                                    "WHERE datname = current_database()")).scalar() == "SQL_ASCII"


def stage_day(engine: Engine, day: dt.date, batch_size: int, out_dir: Path, connections: int = 1) -> int:
    """Write the day's rows as Parquet parts under ``out_dir``; returns how many there were (the
    source passed ``check_source`` first).

    On PostgreSQL the day is split into ``connections`` equal time slices read at the same time,
    each on its own connection and into its own part: the server's COPY work and the client's
    decoding then use every core (a single COPY keeps one server process busy and the rest idle).
    """
    if not db.is_postgres(engine):
        return _write(out_dir / "part-database.parquet", _read_generic(engine, day, batch_size), batch_size)
    start, end = day_window(day)
    check_text = _text_may_not_be_utf8(engine)
    step = (end - start) / connections
    slices = [(start + i * step, end if i == connections - 1 else start + (i + 1) * step)
              for i in range(connections)]
    with ThreadPoolExecutor(max_workers=connections) as pool:
        parts = [pool.submit(_write, out_dir / f"part-database-{i:02d}.parquet",
                             _read_postgres(engine, lo, hi, batch_size, check_text), batch_size)
                 for i, (lo, hi) in enumerate(slices)]
        return sum(part.result() for part in parts)


def _write(path: Path, batches: Iterator[pa.RecordBatch], batch_size: int) -> int:
    rows, pending, pending_rows = 0, [], 0
    group = max(batch_size, ROW_GROUP_ROWS)
    with pq.ParquetWriter(path, READINGS, **WRITE_OPTIONS) as writer:
        for batch in batches:
            pending.append(batch)
            pending_rows += batch.num_rows
            if pending_rows >= group:
                writer.write_table(pa.Table.from_batches(pending, READINGS), row_group_size=pending_rows)
                rows, pending, pending_rows = rows + pending_rows, [], 0
        if pending_rows:
            writer.write_table(pa.Table.from_batches(pending, READINGS), row_group_size=pending_rows)
    return rows + pending_rows


def _read_postgres(engine: Engine, start: dt.datetime, end: dt.datetime,
                   batch_size: int, check_text: bool) -> Iterator[pa.RecordBatch]:
    """ADBC's PostgreSQL driver runs ``COPY … TO STDOUT (FORMAT binary)`` and decodes it into Arrow
    in C: no text formatting on the server, no parsing in Python."""
    import adbc_driver_postgresql.dbapi as adbc
    from adbc_driver_postgresql import StatementOptions

    select = (f"SELECT {', '.join(SOURCE_COLUMNS)} FROM {SOURCE_TABLE} "
              f"WHERE created_at >= '{start.isoformat()}' AND created_at < '{end.isoformat()}'")
    uri = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with adbc.connect(uri) as conn, conn.cursor() as cursor:
        # batches of about BIOMETRICS_BATCH_SIZE rows (a day row is ~70 bytes in Arrow): bounded memory
        cursor.adbc_statement.set_options(**{StatementOptions.BATCH_SIZE_HINT_BYTES.value: str(batch_size * 70)})
        cursor.execute(select)
        for batch in cursor.fetch_record_batch():
            yield _with_source(batch, check_text)


def _read_generic(engine: Engine, day: dt.date, batch_size: int) -> Iterator[pa.RecordBatch]:
    query = (sa.select(*[source_table.c[name] for name in SOURCE_COLUMNS])
             .where(on_day(engine, day))
             .order_by(source_table.c.reading_id))
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(query)
        while rows := _fetch(result, batch_size):
            columns = list(zip(*rows))
            arrays = []
            for name, values in zip(SOURCE_COLUMNS, columns):
                try:
                    if name in ("created_at", "ingested_at"):
                        # a NULL time stays NULL: the transform makes it a missing_key dead letter
                        values = [v.astimezone(dt.timezone.utc).replace(tzinfo=None) if v is not None and v.tzinfo
                                  else v for v in values]
                    arrays.append(pa.array(values, type=_NAIVE.field(name).type))
                except (AttributeError, TypeError, ValueError, pa.ArrowException) as exc:
                    raise _breaks_schema(f"column {name}: {exc}") from None
            yield _with_source(pa.RecordBatch.from_arrays(arrays, schema=_NAIVE))


def _fetch(result: sa.CursorResult, batch_size: int) -> list:
    try:  # SQLite keeps what it is given: a time the driver cannot parse fails here
        return result.fetchmany(batch_size)
    except ValueError as exc:
        raise _breaks_schema(str(exc)) from None


def _breaks_schema(detail: str) -> InputError:
    # a database whose rows break the declared types (SQLite stores text in a number column, or a NULL
    # or unparsable time when the table was made without its constraints): no retry mends that. (NULL
    # keys are the transform's missing_key dead letters.)
    return InputError(f"the source's {SOURCE_TABLE} breaks its schema ({detail}): fix the rows and rerun the day")
