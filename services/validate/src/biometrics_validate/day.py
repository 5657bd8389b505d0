"""The loaded day as the warehouse holds it: one consistent snapshot and the day's basic figures."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from biometrics_core import db
from biometrics_core.errors import ConfigError
from biometrics_core.warehouse import DAY_LOCK, DEAD_LETTERS_TABLE, READINGS_TABLE, RUNS_TABLE, day_lock

# the stages whose dead letters account for source rows (load replaces exactly these per day)
PIPELINE_STAGES = ("extract", "transform")
_DATE_PARAMS = ("day", "since")


def query(sql: str) -> sa.TextClause:
    """``sa.text`` whose date parameters are typed, so SQLite gets the ISO text it stores."""
    clause = sa.text(sql)
    dates = [sa.bindparam(name, type_=sa.Date) for name in _DATE_PARAMS if f":{name}" in sql]
    return clause.bindparams(*dates) if dates else clause


def fetch_rows(conn: sa.Connection, sql: str, **params) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(query(sql), params)]


def as_int(value) -> int:
    return int(value or 0)  # SUM over no rows is NULL; PostgreSQL's SUM(bigint) is numeric


def require_schema(engine: Engine) -> None:
    if engine.dialect.name == "sqlite" and engine.dialect.dbapi.sqlite_version_info < (3, 39):
        raise ConfigError(f"SQLite {engine.dialect.dbapi.sqlite_version} is too old for validate: "
                          "it needs 3.39 or later (FULL OUTER JOIN)")
    db.require_warehouse_tables(engine, "load the day")


@contextlib.contextmanager
def snapshot(engine: Engine, day: dt.date) -> Iterator[sa.Connection]:
    """One read-only transaction: every check sees the same committed day, even when a load of
    that day commits meanwhile.

    On PostgreSQL a snapshot alone is not enough: the load writes the day's readings frozen (``COPY
    … FREEZE``), and frozen rows are visible to every snapshot once their table is attached, so a
    snapshot taken before a reload's commit saw its new readings beside the old daily metrics and
    dead letters (a false alarm). The day's lock, taken shared before the snapshot, waits for a load
    of the day in progress and holds off the next one until validate is done."""
    with engine.connect() as conn:
        postgres = db.is_postgres(engine)
        if postgres:
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            # a session lock, in a transaction of its own: the snapshot is taken after it is granted
            conn.execute(sa.text(f"SELECT pg_advisory_lock_shared({DAY_LOCK})"), day_lock(day))
            conn.commit()
        try:
            with conn.begin():
                if engine.dialect.name == "sqlite":
                    # Python's sqlite3 opens no transaction for reads: each SELECT would see its own
                    # snapshot. An explicit BEGIN holds one read snapshot (WAL) until the commit.
                    conn.exec_driver_sql("BEGIN")
                yield conn
        finally:
            if postgres:
                _unlock_day(conn, day)


def _unlock_day(conn: sa.Connection, day: dt.date) -> None:
    try:
        conn.execute(sa.text(f"SELECT pg_advisory_unlock_shared({DAY_LOCK})"), day_lock(day))
        conn.commit()
    except sa.exc.SQLAlchemyError:
        conn.invalidate()  # closing the server session releases its locks; the pool must not keep it


@dataclass
class DayFacts:
    clean_by_source: dict[str, int] = field(default_factory=dict)
    rejected_by_source: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    load_recorded: bool = False

    @property
    def clean(self) -> int:
        return sum(self.clean_by_source.values())

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_source.values())

    @property
    def loaded(self) -> bool:
        """A load of the day committed: its run is recorded (an empty day), or it left rows."""
        return self.load_recorded or bool(self.clean or self.rejected)


def facts(conn: sa.Connection, day: dt.date) -> DayFacts:
    """The day's dead letters and whether its load was recorded; the clean rows per source are left
    to the day's profile, which counts them in its one scan of the readings (``clean_by_source``
    below when it cannot)."""
    out = DayFacts()
    rows = conn.execute(
        query(f"SELECT source, reason, count(*) FROM {DEAD_LETTERS_TABLE} WHERE date = :day AND stage IN :stages "
              "GROUP BY source, reason").bindparams(sa.bindparam("stages", expanding=True)),
        {"day": day, "stages": list(PIPELINE_STAGES)})
    for source, reason, n in rows:
        out.rejected_by_source[source] = out.rejected_by_source.get(source, 0) + int(n)
        out.rejected_by_reason[reason] = out.rejected_by_reason.get(reason, 0) + int(n)
    out.load_recorded = conn.execute(
        query(f"SELECT count(*) FROM {RUNS_TABLE} WHERE date = :day AND stage = 'load' AND status = 'success'"),
        {"day": day}).scalar_one() > 0
    return out


def clean_by_source(conn: sa.Connection, day: dt.date) -> dict[str, int]:
    """The day's readings per source, by a scan of its own."""
    rows = conn.execute(query(f"SELECT source, count(*) FROM {READINGS_TABLE} WHERE date = :day GROUP BY source"),
                        {"day": day})
    return {source: int(n) for source, n in rows}


def has_readings(conn: sa.Connection, day: dt.date) -> bool:
    return conn.execute(query(f"SELECT 1 FROM {READINGS_TABLE} WHERE date = :day LIMIT 1"), {"day": day}).first() is not None
