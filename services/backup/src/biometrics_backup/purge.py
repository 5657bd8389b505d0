"""Retention: drop what is older than the cutoff (``--date`` minus ``--retention-days``).

A day older than the cutoff goes; the cutoff day itself stays. Everything here is idempotent: a
second run with the same arguments finds nothing left to drop.

- PostgreSQL warehouse: each ``biometric_readings`` partition whose range ends on or before the
  cutoff is detached and dropped (one short transaction each, no row-by-row delete); rows older
  than the cutoff elsewhere (a default partition) and in the other tables are deleted.
- SQLite warehouse: the rows older than the cutoff are deleted.
- Staging: ``backups/<date>/`` folders, and top-level ``<date>/`` folders (a pipeline staging
  root with one folder per day), older than the cutoff.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

import sqlalchemy as sa

from biometrics_core import db
from biometrics_core.errors import ConfigError
from biometrics_core.staging import Staging
from biometrics_core.warehouse import (DAILY_METRICS_TABLE, DEAD_LETTERS_TABLE, READINGS_TABLE, RUNS_TABLE,
                                      lock_partitions)

from . import layout

log = logging.getLogger(__name__)

_RANGE = re.compile(r"^FOR VALUES FROM \('(\d{4}-\d{2}-\d{2})'\) TO \('(\d{4}-\d{2}-\d{2})'\)$")
_LOCK_TIMEOUT = "60s"  # detaching waits for readers of the table; give up (exit 1) rather than queue forever


def _old_partitions(conn: sa.Connection, cutoff: dt.date) -> list[str]:
    """Partitions of the readings table whose whole range lies before the cutoff."""
    rows = conn.execute(sa.text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:parent) ORDER BY 1"),
        {"parent": READINGS_TABLE}).all()
    old = []
    for name, bound in rows:
        match = _RANGE.match(bound or "")
        if match and dt.date.fromisoformat(match.group(2)) <= cutoff:
            old.append(name)
    return old


def _drop_partitions(engine: sa.Engine, cutoff: dt.date) -> list[dict]:
    with engine.connect() as conn:
        names = _old_partitions(conn, cutoff)
    dropped = []
    for name in names:
        quoted = engine.dialect.identifier_preparer.quote(name)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
            lock_partitions(conn, log)  # after any backup in progress, which still lists the partition
            rows = conn.exec_driver_sql(f"SELECT count(*) FROM {quoted}").scalar_one()
            conn.exec_driver_sql(f"ALTER TABLE {READINGS_TABLE} DETACH PARTITION {quoted}")
            conn.exec_driver_sql(f"DROP TABLE {quoted}")
        log.info("dropped partition %s (%d rows)", name, rows)
        dropped.append({"name": name, "rows": int(rows)})
    return dropped


def _delete_rows(engine: sa.Engine, cutoff: dt.date) -> dict[str, int]:
    """Delete the rows older than the cutoff, in one transaction; {table: rows deleted}."""
    params = {"cutoff": cutoff, "cutoff_ts": dt.datetime.combine(cutoff, dt.time.min, tzinfo=dt.timezone.utc)}
    types = [sa.bindparam("cutoff", type_=sa.Date), sa.bindparam("cutoff_ts", type_=sa.DateTime(timezone=True))]
    statements = {
        READINGS_TABLE: f"DELETE FROM {READINGS_TABLE} WHERE date < :cutoff",
        DAILY_METRICS_TABLE: f"DELETE FROM {DAILY_METRICS_TABLE} WHERE date < :cutoff",
        DEAD_LETTERS_TABLE: f"DELETE FROM {DEAD_LETTERS_TABLE} WHERE date < :cutoff",
        # runs without a data day (e.g. migrate) age by when they started
        RUNS_TABLE: f"DELETE FROM {RUNS_TABLE} WHERE date < :cutoff OR (date IS NULL AND started_at < :cutoff_ts)",
    }
    deleted = {}
    with engine.begin() as conn:
        if db.is_postgres(engine):
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
        for table, sql in statements.items():
            used = [t for t in types if f":{t.key}" in sql]
            result = conn.execute(sa.text(sql).bindparams(*used), params)
            deleted[table] = int(result.rowcount or 0)
    return deleted


def purge_warehouse(engine: sa.Engine, cutoff: dt.date) -> dict:
    db.require_warehouse_tables(engine, "purge again")
    dropped = _drop_partitions(engine, cutoff) if db.is_postgres(engine) else []
    deleted = _delete_rows(engine, cutoff)
    for table, count in deleted.items():
        if count:
            log.info("deleted %d rows of %s older than %s", count, table, cutoff)
    return {"dropped_partitions": dropped, "deleted_rows": deleted}


def staging_to_purge(staging: Staging, cutoff: dt.date) -> list[str]:
    """The dated folders older than the cutoff. Listed before the warehouse is touched: staging that
    cannot be read (wrong credentials, say) or is not there (a mistyped folder or bucket, which would
    leave every old backup in place) stops the purge before anything is deleted."""
    if not staging.container_exists():
        raise ConfigError(f"the staging path {staging.uri()}: the {staging.container} does not exist; "
                          "nothing was purged")
    if not staging.is_local and staging.holds_nothing():  # an S3 prefix exists only while it holds objects
        raise ConfigError(f"the staging path {staging.uri()} holds nothing (a mistyped prefix?); nothing was purged")
    candidates = [f"{layout.BACKUPS_DIR}/{name}" for name in staging.list_dirs(layout.BACKUPS_DIR)]
    candidates += staging.list_dirs("")
    return [rel for rel in candidates
            if (day := layout.folder_day(rel.rsplit("/", 1)[-1])) is not None and day < cutoff]


def purge_staging(staging: Staging, folders: list[str]) -> list[str]:
    """Delete the folders ``staging_to_purge`` found; the URIs deleted."""
    deleted = []
    for rel in folders:
        staging.delete(rel)
        log.info("deleted %s", staging.uri(rel))
        deleted.append(staging.uri(rel))
    return deleted
