"""Load one day atomically and idempotently: a rerun replaces the day, a crash changes nothing.

PostgreSQL: the day's readings are COPied into a fresh, unindexed table on a second connection and
indexed afterwards (both indexes at once), while the day's transaction replaces its daily metrics
and dead letters; that transaction then swaps the table in for the day's partition (detach old,
attach new) and commits everything at once. Readers see the old day until the commit, and a killed
load leaves the old day intact (at most an unattached table, which the day's next load drops).
SQLite (embedded default): delete and insert the day in one transaction, rows converted by Arrow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import sqlalchemy as sa

from biometrics_core import db, runlog, schemas, warehouse
from biometrics_core.errors import ConfigError
from biometrics_core.manifest import RunManifest

from .copy import binary_chunks, copy_sql

log = logging.getLogger(__name__)

READING_COLUMNS = [f.name for f in schemas.CLEAN_READINGS]
METRIC_COLUMNS = [f.name for f in schemas.DAILY_METRICS]
DEAD_LETTER_COLUMNS = [f.name for f in schemas.DEAD_LETTERS]
PIPELINE_STAGES = ("extract", "transform")  # the stages whose dead letters a load replaces
# the columns of the warehouse's unique index on the natural key (migration 0002), in its order:
# the day's table gets the same index, which ATTACH PARTITION then adopts instead of building one
NATURAL_KEY_INDEX = ("created_at", "user_id", "device_id", "metric_type", "date")
PRIMARY_KEY = ("reading_id", "source", "date")  # the warehouse's, migration 0001


@dataclasses.dataclass
class DayData:
    readings: ds.Dataset
    daily_metrics: ds.Dataset
    dead_letters: ds.Dataset
    manifests: list[RunManifest]


@dataclasses.dataclass
class LoadCounts:
    readings: int = 0
    daily_metrics: int = 0
    dead_letters: int = 0
    replaced_readings: int = 0


def _batches(dataset: ds.Dataset, batch_size: int) -> Iterator[pa.RecordBatch]:
    yield from dataset.to_batches(batch_size=batch_size)


def load_day(engine: sa.Engine, day: dt.date, data: DayData, batch_size: int, own: RunManifest,
             finish, maintenance_work_mem: str) -> LoadCounts:
    if db.is_postgres(engine):
        return _load_postgres(engine, day, data, batch_size, own, finish, maintenance_work_mem)
    if engine.dialect.name == "sqlite":
        return _load_sqlite(engine, day, data, batch_size, own, finish)
    raise ConfigError(f"unsupported warehouse database {engine.dialect.name!r}: use PostgreSQL or SQLite")


def _copy(conn: sa.Connection, table: str, columns: list[str], dataset: ds.Dataset, batch_size: int,
          freeze: bool = False) -> int:
    counter = [0]
    started = time.monotonic()
    chunks = binary_chunks(_batches(dataset, batch_size), dataset.schema, columns, counter)
    db.copy_in(conn, copy_sql(table, columns, freeze), chunks)
    log.info("copied %d rows into %s in %.2f s", counter[0], table, time.monotonic() - started)
    return counter[0]


def _timed(conn: sa.Connection, sql: str, params: dict | None = None):
    started = time.monotonic()
    result = conn.execute(sa.text(sql), params or {})
    log.debug("%.2f s: %s", time.monotonic() - started, " ".join(sql.split())[:120])
    return result


def _load_postgres(engine, day, data, batch_size, own, finish, maintenance_work_mem) -> LoadCounts:
    """The day's readings are built on a second connection while this one replaces the day's
    aggregates and dead letters; the swap and the run log then commit with them, all at once."""
    counts = LoadCounts()
    partition = warehouse.partition_name(day)
    building = warehouse.building_table(day, own.run_id)
    try:
        _load_postgres_day(engine, day, data, batch_size, own, finish, maintenance_work_mem, counts, partition,
                           building)
    except BaseException:
        # the built table is committed apart from the day's transaction: a failure at the swap (or
        # after it, before the commit) left it behind, a day's worth of rows (nothing once swapped in)
        _drop_quietly(engine, building)
        raise
    _analyze_rewritten(engine)
    return counts


def _load_postgres_day(engine, day, data, batch_size, own, finish, maintenance_work_mem, counts: LoadCounts,
                       partition: str, building: str) -> None:
    with engine.begin() as conn:  # the day's transaction: readers see nothing of the load before its commit
        _timed(conn, "SET LOCAL lock_timeout = '5min'")
        _require_owner(conn)
        # one load of a day at a time: a second one waits here, then replaces the first one's day
        _timed(conn, f"SELECT pg_advisory_xact_lock({warehouse.DAY_LOCK})", warehouse.day_lock(day))
        # the index builds' sort memory, tried here first: a value the server refuses stops the load
        # before the day's COPY, not after it
        db.set_local_memory(conn, "maintenance_work_mem", maintenance_work_mem, "BIOMETRICS_LOAD_MAINTENANCE_WORK_MEM")
        _drop_leftovers(conn, day)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="build") as pool:
            built = pool.submit(_build_readings, engine, day, building, data.readings, batch_size,
                                maintenance_work_mem)
            try:
                _timed(conn, f"DELETE FROM {warehouse.DAILY_METRICS_TABLE} WHERE date = :d", {"d": day})
                counts.daily_metrics = _copy(conn, warehouse.DAILY_METRICS_TABLE, METRIC_COLUMNS,
                                             data.daily_metrics, batch_size)
                counts.dead_letters = _replace_dead_letters_postgres(conn, day, data.dead_letters, batch_size)
                counts.readings = built.result()
            except BaseException:
                _abandon(engine, built, building)
                raise
        counts.replaced_readings = _swap_in(conn, day, building, partition)
        _record(conn, data, own, counts, finish)


def _require_owner(conn: sa.Connection) -> None:
    """ATTACH and DETACH PARTITION need the partitioned table's owner: a role that is not would copy
    and index the whole day before the swap refused it, on every retry."""
    if not _timed(conn, "SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class WHERE oid = "
                        f"to_regclass('{warehouse.READINGS_TABLE}')").scalar():
        raise ConfigError(f"the warehouse role {conn.execute(sa.text('SELECT current_user')).scalar()!r} does not "
                          f"own {warehouse.READINGS_TABLE} (or a member of its owner): swapping a day's partition in "
                          "needs it; load as the role that ran biometrics-load migrate")


def _analyze_rewritten(engine: sa.Engine) -> None:
    """Fresh planner statistics for the tables the day's transaction rewrote rows of, as after any
    bulk load: without them, validate's count of a first day's 0.5 M dead letters was planned for 36
    rows (a sort and a bitmap scan, 0.68 s instead of 0.12 s). Done after the commit, in a short
    transaction of its own: ANALYZE's lock would otherwise queue concurrent loads of other days.
    The day is loaded already, so a failure here is only logged."""
    tables = f"{warehouse.DAILY_METRICS_TABLE}, {warehouse.DEAD_LETTERS_TABLE}"
    try:
        with engine.begin() as conn:
            _timed(conn, "SET LOCAL lock_timeout = '10s'")
            _timed(conn, f"ANALYZE {tables}")
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not analyze %s after the load (%s): the planner keeps their older statistics",
                    tables, type(exc).__name__)


def _build_readings(engine: sa.Engine, day: dt.date, building: str, readings: ds.Dataset, batch_size: int,
                    maintenance_work_mem: str) -> int:
    """The day's readings as a complete table beside the partitioned one, committed but not attached.

    Unindexed while copying, indexed after. The day's CHECK is there from the start (tested per row
    as it arrives, no scan after) and spares ATTACH its validation scan."""
    next_day = day + dt.timedelta(days=1)
    with engine.begin() as conn:
        _timed(conn, f"CREATE TABLE {building} (LIKE {warehouse.READINGS_TABLE} INCLUDING DEFAULTS, "
               f"CONSTRAINT {building}_day CHECK (date >= DATE '{day}' AND date < DATE '{next_day}'))")
        log.info("copying readings into %s", building)
        # FREEZE: the table is new in this transaction, so its rows can be written frozen and visible to
        # all; validate's scans and the first vacuum then rewrite no page to set hint bits
        rows = _copy(conn, building, READING_COLUMNS, readings, batch_size, freeze=True)
    try:  # committed, so two connections can index it at once
        indexes = {f"{building}_pkey": PRIMARY_KEY, f"{building}_natural_key": NATURAL_KEY_INDEX}
        with ThreadPoolExecutor(max_workers=len(indexes), thread_name_prefix="index") as pool:
            builds = [pool.submit(_create_unique_index, engine, building, name, columns, maintenance_work_mem)
                      for name, columns in indexes.items()]
            for build in builds:
                build.result()
        with engine.begin() as conn:
            # the columns are NOT NULL already: no scan, the index just becomes the key
            _timed(conn, f"ALTER TABLE {building} ADD CONSTRAINT {building}_pkey PRIMARY KEY USING INDEX {building}_pkey")
            _timed(conn, f"ANALYZE {building}")
    except BaseException:
        _drop_quietly(engine, building)
        raise
    return rows


def _create_unique_index(engine: sa.Engine, table: str, name: str, columns: tuple[str, ...],
                         maintenance_work_mem: str) -> None:
    """One index of the day's table, built by one server process sorting in memory.

    The two indexes are built at once, each this way. A parallel build writes its workers' sorted
    runs to temporary files and merges them in one process at the end: on 2 cores the two parallel
    builds one after the other took 8.8 s, two serial builds at once 5.4 s (means of 4 runs, 9.5 M
    readings). The price is memory: each build may use maintenance_work_mem.

    Leaf pages are filled completely (fillfactor 100, not btree's 90): a day's partition is
    replaced whole, never updated in place, so the free tenth would only cost pages to write, read
    and back up: at 9.5 M readings the natural key's index 598 -> 542 MB, the primary key's 367 ->
    331 MB (the builds' time moved within the machine's noise)."""
    with engine.begin() as conn:
        db.set_local_memory(conn, "maintenance_work_mem", maintenance_work_mem, "BIOMETRICS_LOAD_MAINTENANCE_WORK_MEM")
        _timed(conn, "SET LOCAL max_parallel_maintenance_workers = 0")
        _timed(conn, f"CREATE UNIQUE INDEX {name} ON {table} ({', '.join(columns)}) WITH (fillfactor = 100)")


def _swap_in(conn: sa.Connection, day: dt.date, building: str, partition: str) -> int:
    """Replace the day's partition by the built table; returns the rows the old one held."""
    parent = warehouse.READINGS_TABLE
    replaced = 0
    warehouse.lock_partitions(conn, log)
    if _timed(conn, "SELECT to_regclass(:name) IS NOT NULL", {"name": partition}).scalar():
        replaced = _timed(conn, f"SELECT count(*) FROM {partition}").scalar()
        _timed(conn, f"ALTER TABLE {parent} DETACH PARTITION {partition}")
        _timed(conn, f"DROP TABLE {partition}")
    # the partition belongs to the partitioned table's owner, also when a member of that role (or a
    # superuser) loads: a partition of the loader's own refused the owner's next reload and pg_dump
    _timed(conn, f"DO $$ BEGIN EXECUTE format('ALTER TABLE {building} OWNER TO %I', (SELECT pg_get_userbyid(relowner) "
                 f"FROM pg_class WHERE oid = to_regclass('{parent}'))); END $$")
    _timed(conn, f"ALTER TABLE {building} RENAME TO {partition}")
    _timed(conn, f"ALTER TABLE {parent} ATTACH PARTITION {partition} "
           f"FOR VALUES FROM ('{day}') TO ('{day + dt.timedelta(days=1)}')")
    _timed(conn, f"ALTER TABLE {partition} DROP CONSTRAINT {building}_day")  # the partition bound says it
    return replaced


def _drop_leftovers(conn: sa.Connection, day: dt.date) -> None:
    """Tables of this day a killed load built but never swapped in (the day's lock keeps live ones out)."""
    names = _timed(conn, "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                         "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND NOT c.relispartition "
                         "AND c.relname ~ :pattern", {"pattern": warehouse.building_table_regex(day)}).scalars().all()
    for name in names:
        log.warning("dropping %s, left by an interrupted load of the same day", name)
        _timed(conn, f"DROP TABLE {name}")


def _abandon(engine: sa.Engine, built, building: str) -> None:
    """This transaction failed: wait for the build and drop what it committed."""
    try:
        built.result()
    except BaseException:  # noqa: BLE001 - the build's own error is not the one to report; it dropped its table
        return
    _drop_quietly(engine, building)


def _drop_quietly(engine: sa.Engine, building: str) -> None:
    """Best effort: the next load of the day drops the table otherwise."""
    try:
        with engine.begin() as conn:
            _timed(conn, f"DROP TABLE IF EXISTS {building}")
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not drop %s after the failed load (%s): the next load of the day will", building,
                    type(exc).__name__)


def _stages(sql: str) -> sa.TextClause:
    return sa.text(sql).bindparams(sa.bindparam("stages", expanding=True))


def _delete_dead_letters(conn: sa.Connection, day: dt.date) -> None:
    """Remove the day's pipeline dead letters, remembering when each entered the queue and its status.

    A rerun re-creates the same dead letters; they keep their first ``created_at`` and whatever an
    operator decided (``replayed``/``discarded``), so reruns never reset the queue.
    """
    params = {"d": day, "stages": list(PIPELINE_STAGES)}
    table = warehouse.DEAD_LETTERS_TABLE
    kept = (f"source, source_record_id, reason, stage, {_record_key(conn, None)} AS record_key, created_at, status, "
            "status_changed_at")
    conn.execute(sa.text("DROP TABLE IF EXISTS dead_letters_kept"))
    if conn.dialect.name == "postgresql":
        # what is kept is what is deleted, in one statement: a copy taken first, then a DELETE, each
        # with its own snapshot (READ COMMITTED), lost a decision an operator committed in between
        # (the DELETE waits for the operator's UPDATE and returns the row as it is then)
        conn.execute(sa.text(f"CREATE TEMP TABLE dead_letters_kept AS SELECT {kept} FROM {table} WITH NO DATA"))
        conn.execute(_stages(f"WITH gone AS (DELETE FROM {table} WHERE date = :d AND stage IN :stages "
                             f"RETURNING {kept}) INSERT INTO dead_letters_kept SELECT * FROM gone"), params)
        return
    # SQLite: the load's transaction already holds the database's write lock (it deleted the day's
    # readings first), so no operator's update can come between the copy and the DELETE
    conn.execute(_stages(f"CREATE TEMP TABLE dead_letters_kept AS SELECT {kept} FROM {table} "
                         "WHERE date = :d AND stage IN :stages"), params)
    conn.execute(_stages(f"DELETE FROM {table} WHERE date = :d AND stage IN :stages"), params)


# Which dead letter a row is. Its record too: one id can have several letters of one reason (a vendor
# id given to two readings, a record sent three times), each with its own operator status.
_LETTER_KEY = ("stage", "source", "reason", "source_record_id")


def _record_key(conn: sa.Connection, alias: str | None) -> str:
    """SQL: the record as a join key. On PostgreSQL a 64-bit hash of its text (json has no equality):
    a rerun's INSERT of the 10 M day's 496 k letters took 7.8-9.1 s with no record in the key,
    11.0-12.8 s with its MD5, 9.0-10.7 s with this hash; a collision, within one id and reason, would
    only swap two letters' histories. SQLite compares the text."""
    record = f"{alias}.record" if alias else "record"
    return f"hashtextextended(CAST({record} AS TEXT), 0)" if conn.dialect.name == "postgresql" else record


def _letter_key(alias: str | None = None) -> list[str]:
    """SQL: the columns that say which dead letter a row is (a missing source_record_id is '')."""
    prefix = f"{alias}." if alias else ""
    return [f"coalesce({prefix}{c}, '')" if c == "source_record_id" else f"{prefix}{c}" for c in _LETTER_KEY]


def _same_letter(conn: sa.Connection, kept: str, new: str) -> str:
    """SQL: the kept row (of ``dead_letters_kept``) and the new one are the same dead letter."""
    pairs = [*zip(_letter_key(kept), _letter_key(new)), (f"{kept}.record_key", _record_key(conn, new))]
    return " AND ".join(f"{k} = {n}" for k, n in pairs)


# The queue has no unique key, so a letter can be in it more than once (a record sent three times
# gives two identical duplicate letters, each with its own operator status): the copies of a letter
# are numbered in the queue and in the new letters alike, and the n-th new copy takes the n-th kept
# copy's history (the first copy's went to every new one; a join with every copy would multiply
# the new rows)
_NUMBERED_KEPT_LETTERS = (
    f"SELECT *, row_number() OVER (PARTITION BY {', '.join(_letter_key())}, record_key "
    "ORDER BY created_at, status_changed_at, status) AS nth FROM dead_letters_kept")


def _copy_number(conn: sa.Connection, alias: str) -> str:
    """SQL: which copy of its letter a new row is (1, 2, …), over the rows ``alias`` names."""
    return (f"row_number() OVER (PARTITION BY {', '.join(_letter_key(alias))}, {_record_key(conn, alias)}"
            f"{' ORDER BY ' + alias + '.rowid' if conn.dialect.name == 'sqlite' else ''})")


def _any_kept_letters(conn: sa.Connection) -> bool:
    """Whether the day had pipeline dead letters before this load (not on its first load)."""
    return conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM dead_letters_kept)")).scalar()


def _replace_dead_letters_postgres(conn: sa.Connection, day: dt.date, dead_letters: ds.Dataset,
                                   batch_size: int) -> int:
    """The day's pipeline dead letters replaced, each keeping its history from an earlier load.

    A first load of the day COPies them straight in. A rerun COPies them into a temporary table and
    inserts them with their history joined on: updating the rows after their COPY wrote every one of
    them twice, with its three index entries (496 k dead letters: 10.5-13.2 s of UPDATE after a 3.9 s
    COPY; the whole rerun of the load took 22.8-24.2 s, and takes 18.4-19.5 s this way)."""
    _delete_dead_letters(conn, day)
    if not _any_kept_letters(conn):
        conn.execute(sa.text("DROP TABLE dead_letters_kept"))
        return _copy(conn, warehouse.DEAD_LETTERS_TABLE, DEAD_LETTER_COLUMNS, dead_letters, batch_size)
    columns = ", ".join(DEAD_LETTER_COLUMNS)
    table = warehouse.DEAD_LETTERS_TABLE
    _timed(conn, f"CREATE TEMP TABLE dead_letters_arriving ON COMMIT DROP AS SELECT {columns} FROM {table} WITH NO DATA")
    rows = _copy(conn, "dead_letters_arriving", DEAD_LETTER_COLUMNS, dead_letters, batch_size)
    arriving = ", ".join("coalesce(k.created_at, a.created_at)" if c == "created_at" else f"a.{c}"
                         for c in DEAD_LETTER_COLUMNS)
    # the planner guesses a merge join, sorting the wide arriving rows on disk (5.9 s for 496 k);
    # hashing the kept keys takes 3.9 s
    _timed(conn, "SET LOCAL enable_mergejoin = off")
    _timed(conn, f"""
        INSERT INTO {table} ({columns}, status, status_changed_at)
        SELECT {arriving}, coalesce(k.status, 'pending'), k.status_changed_at
        FROM (SELECT a.*, {_copy_number(conn, "a")} AS nth FROM dead_letters_arriving a) a
        LEFT JOIN ({_NUMBERED_KEPT_LETTERS}) k ON {_same_letter(conn, "k", "a")} AND k.nth = a.nth""")
    _timed(conn, "RESET enable_mergejoin")
    _timed(conn, "DROP TABLE dead_letters_arriving, dead_letters_kept")
    return rows


def _restore_dead_letter_history(conn: sa.Connection, day: dt.date) -> None:
    """SQLite: the day's new dead letters get back the history of their earlier selves."""
    table = warehouse.DEAD_LETTERS_TABLE
    if _any_kept_letters(conn):
        conn.execute(_stages(
            f"UPDATE {table} SET created_at = k.created_at, status = k.status, status_changed_at = k.status_changed_at "
            f"FROM ({_NUMBERED_KEPT_LETTERS}) k, (SELECT n.rowid AS row, {_copy_number(conn, 'n')} AS nth "
            f"FROM {table} n WHERE n.date = :d AND n.stage IN :stages) new "
            f"WHERE {table}.rowid = new.row AND {_same_letter(conn, 'k', table)} AND k.nth = new.nth"),
            {"d": day, "stages": list(PIPELINE_STAGES)})
    conn.execute(sa.text("DROP TABLE dead_letters_kept"))


def _sqlite_rows(batch: pa.RecordBatch, columns: list[str]) -> list[tuple]:
    """Plain tuples in SQLAlchemy's SQLite storage formats, converted column-wise by Arrow."""
    values = []
    for name in columns:
        column = batch.column(name)
        if pa.types.is_timestamp(column.type):
            column = pc.strftime(column.cast(pa.timestamp("us")), "%Y-%m-%d %H:%M:%S")  # %S carries the µs
        elif pa.types.is_date(column.type):
            column = column.cast(pa.string())
        values.append(column.to_pylist())
    return list(zip(*values))


def _load_sqlite(engine, day, data, batch_size, own, finish) -> LoadCounts:
    counts = LoadCounts()
    meta = sa.MetaData()
    tables = {name: sa.Table(name, meta, autoload_with=engine)
              for name in (warehouse.READINGS_TABLE, warehouse.DAILY_METRICS_TABLE, warehouse.DEAD_LETTERS_TABLE)}
    with engine.begin() as conn:
        readings = tables[warehouse.READINGS_TABLE]
        counts.replaced_readings = conn.execute(
            sa.select(sa.func.count()).select_from(readings).where(readings.c.date == day)).scalar()
        conn.execute(readings.delete().where(readings.c.date == day))
        metrics = tables[warehouse.DAILY_METRICS_TABLE]
        conn.execute(metrics.delete().where(metrics.c.date == day))
        _delete_dead_letters(conn, day)
        for table, columns, dataset, attr in (
                (readings, READING_COLUMNS, data.readings, "readings"),
                (metrics, METRIC_COLUMNS, data.daily_metrics, "daily_metrics"),
                (tables[warehouse.DEAD_LETTERS_TABLE], DEAD_LETTER_COLUMNS, data.dead_letters, "dead_letters")):
            for batch in _batches(dataset, batch_size):
                if batch.num_rows:
                    conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(columns)}) "
                                         f"VALUES ({', '.join('?' * len(columns))})", _sqlite_rows(batch, columns))
                    setattr(counts, attr, getattr(counts, attr) + batch.num_rows)
        _restore_dead_letter_history(conn, day)
        _record(conn, data, own, counts, finish)
    return counts


def _record(conn, data: DayData, own: RunManifest, counts: LoadCounts, finish) -> None:
    own.rows_out = counts.readings
    finish()
    runlog.record_runs(conn, [*data.manifests, own])
