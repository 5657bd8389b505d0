"""PostgreSQL: ``pg_dump`` (custom format) and ``pg_restore``.

The client tools get the connection from PG* environment variables (``db.libpq_env``): the password
never appears in a command line (``ps`` would show it). ``create`` exports the snapshot of a
REPEATABLE READ transaction and hands it to ``pg_dump --snapshot``, and computes the table checksums
in that same transaction while pg_dump runs: the dump and the manifest describe the same instant.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from biometrics_core import db, settings
from biometrics_core.errors import ConfigError, StageFailed
from biometrics_core.redact import one_line, redact
from biometrics_core.warehouse import BACKUP_LOCK, PARTITIONS_LOCK, READINGS_TABLE, building_table_regex, day_lock

from . import checksums

log = logging.getLogger(__name__)

# user relations of any kind: a restore target must have none (unless --force)
_USER_RELATIONS = """
    SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
"""


def client_tool(name: str) -> str:
    """The path of pg_dump / pg_restore: PATH first (Debian's wrapper), then the newest install."""
    found = shutil.which(name)
    if found:
        return found
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                         if Path(p).parent.name.isdigit() else 0, reverse=True):
        candidate = Path(bindir, name)
        if candidate.exists():
            return str(candidate)
    raise ConfigError(f"{name} not found: install the PostgreSQL client tools (Debian: postgresql-client-15)")


def _env(url: str) -> dict[str, str]:
    """The client tool's environment: the stage's, without its secrets (the other database URLs, S3
    keys: /proc/<pid>/environ shows them), plus the connection as PG* variables."""
    secrets = {s.name for s in settings.SETTINGS if s.secret}
    env = {name: value for name, value in os.environ.items() if name not in secrets}
    env.update(db.libpq_env(url))
    env.setdefault("PGCONNECT_TIMEOUT", "30")
    env["PGAPPNAME"] = "biometrics-backup"
    return env


def _conninfo_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _failure(tool: str, returncode: int, log_path: Path, url: str) -> StageFailed:
    try:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    # the tool's own "error:" lines say what failed; the lines after them only quote the statement
    errors = [line for line in lines if "error:" in line.lower()]
    password = make_url(url).password or ""
    detail = one_line(redact(" ".join(errors[:2] or lines[-3:]), (str(password),))) if lines else "no error output"
    return StageFailed(f"{tool} failed (exit {returncode}): {detail}")


def server_version(conn: sa.Connection) -> str:
    return str(conn.exec_driver_sql("SHOW server_version").scalar_one())


def partitions(conn: sa.Connection) -> dict[str, str]:
    """{partition name: bound expression} of the readings table (for the manifest)."""
    rows = conn.execute(sa.text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:parent) ORDER BY 1"),
        {"parent": READINGS_TABLE})
    return {name: bound for name, bound in rows}


# The tables loads build a day's readings in are not the warehouse's until attached: one being built
# (another day's load) or left by a killed load would be backed up and restored as a table of its own
_BUILDING_TABLES = "biometric_readings_p" + "[0-9]" * 8 + "_" + "[0-9a-f]" * 10  # pg_dump's pattern syntax


@contextmanager
def _session_lock(engine: sa.Engine, lock: str, params: dict, waiting: str, shared: bool = False) -> Iterator[None]:
    """Hold an advisory lock on a connection of its own, outside any transaction: a warehouse's
    ``idle_in_transaction_session_timeout`` does not end it, and a wait for it comes before the
    snapshot the caller takes after. ``waiting`` is logged when another session holds it."""
    kind = "_shared" if shared else ""
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        if not conn.execute(sa.text(f"SELECT pg_try_advisory_lock{kind}({lock})"), params).scalar_one():
            log.info(waiting)
            conn.execute(sa.text(f"SELECT pg_advisory_lock{kind}({lock})"), params)
        yield
        conn.execute(sa.text(f"SELECT pg_advisory_unlock{kind}({lock})"), params)
    finally:
        conn.close()  # (the server releases a session's locks with it, whatever went wrong)


def day_backup_lock(engine: sa.Engine, day: dt.date):
    """The day's backup lock: a second backup of the day waits for the first to publish, then dumps
    what is there by then and replaces it whole."""
    return _session_lock(engine, BACKUP_LOCK, day_lock(day), f"waiting for another backup of {day} to finish")


def dump(engine: sa.Engine, url: str, target: Path, scratch: Path) -> dict:
    """Dump the database into the file ``target``; return the manifest facts (incl. table checksums).
    No partition is attached or dropped meanwhile (``PARTITIONS_LOCK``)."""
    with _session_lock(engine, PARTITIONS_LOCK, {}, "waiting for a load or purge to finish changing the readings' "
                       "partitions", shared=True):
        return _dump(engine, url, target, scratch)


def _dump(engine: sa.Engine, url: str, target: Path, scratch: Path) -> dict:
    log_path = scratch / "pg_dump.log"
    argv = [client_tool("pg_dump"), "--format=custom", "--no-password", f"--file={target}",
            f"--exclude-table={_BUILDING_TABLES}"]
    conn = engine.connect().execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    try:
        snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
        log.info("pg_dump of %s (snapshot %s)", db.safe_url(url), snapshot)
        with open(log_path, "wb") as stderr:
            proc = subprocess.Popen([*argv, f"--snapshot={snapshot}"], env=_env(url), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            facts = {"server_version": server_version(conn), "partitions": partitions(conn),
                     "tables": checksums.postgres_table_sums(conn, skip=re.compile(building_table_regex()))}
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        returncode = proc.wait()  # the snapshot must stay open until pg_dump is done
    finally:
        conn.close()
    if returncode != 0:
        raise _failure("pg_dump", returncode, log_path, url)
    return facts


def is_empty(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(sa.text(_USER_RELATIONS)).scalar_one() == 0


# where ``--force`` moves the target's tables while the backup's are restored: one transaction moves
# them (metadata only), and they are dropped once the restored tables are verified, or moved back
ASIDE_SCHEMA = "biometrics_restore_previous"


def _qualified(preparer, schema: str, name: str) -> str:
    return f"{preparer.quote_schema(schema)}.{preparer.quote(name)}"


def _manifest_table(preparer, key: str) -> str:
    """The quoted name of a manifest table (``name`` in public, or ``schema.name``)."""
    schema, _, name = key.rpartition(".")
    return _qualified(preparer, schema or "public", name)


def _table_trees(conn: sa.Connection, preparer, tables: list[str]) -> list[tuple[int, str, str]]:
    """(oid, schema, name) of each given manifest table the target has, then of its partitions
    (pg_partition_tree lists nothing for a plain table), each once."""
    found: list[tuple[int, str, str]] = []
    for key in tables:
        found += [tuple(row) for row in conn.execute(sa.text(
            "SELECT c.oid, n.nspname, c.relname FROM (SELECT to_regclass(:t) AS relid UNION ALL "
            "SELECT relid FROM pg_partition_tree(to_regclass(:t)) WHERE level > 0) t "
            "JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace"),
            {"t": _manifest_table(preparer, key)})]
    return list(dict.fromkeys(found))


def set_aside(engine: sa.Engine, tables: list[str]) -> list[tuple[str, str]]:
    """Move the given manifest tables (``name`` or ``schema.name``) that the target has, with all their
    partitions, into ``ASIDE_SCHEMA``, in one transaction: ``--force`` makes room for the backup's
    tables without losing the target's if the restore fails. Returns the (schema, name) moved.
    (``pg_restore --clean`` cannot do it: it fails on the inherited constraints of partitions.)"""
    preparer = engine.dialect.identifier_preparer
    with engine.begin() as conn:
        if conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": ASIDE_SCHEMA}).first():
            raise ConfigError(f"the restore target has a schema {ASIDE_SCHEMA}: an interrupted restore left the "
                              "tables it replaced there; keep what you need of it, drop it, and restore again")
        tree = _table_trees(conn, preparer, tables)
        _refuse_dependents(conn, [oid for oid, _, _ in tree])
        moved = [(schema, name) for _, schema, name in tree]
        if moved:  # none of the backup's tables there: no schema, which would read as an interrupted restore
            conn.exec_driver_sql(f"CREATE SCHEMA {preparer.quote_schema(ASIDE_SCHEMA)}")
        for schema, name in moved:
            conn.exec_driver_sql(f"ALTER TABLE {_qualified(preparer, schema, name)} "
                                 f"SET SCHEMA {preparer.quote_schema(ASIDE_SCHEMA)}")
    log.info("set %d existing tables of the target aside in schema %s", len(moved), ASIDE_SCHEMA)
    return moved


# Objects outside the tables set aside that depend on them: the set-aside tables are dropped with
# CASCADE once the restored ones are verified, and these would go with them, without a word
_DEPENDENTS = """
    SELECT DISTINCT CASE c.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END || c.oid::regclass::text
    FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
    JOIN pg_class c ON c.oid = r.ev_class
    WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY(CAST(:oids AS oid[])) AND c.oid <> ALL(CAST(:oids AS oid[]))
    UNION
    SELECT 'foreign key ' || quote_ident(con.conname) || ' of ' || con.conrelid::regclass::text FROM pg_constraint con
    WHERE con.contype = 'f' AND con.confrelid = ANY(CAST(:oids AS oid[])) AND con.conrelid <> ALL(CAST(:oids AS oid[]))
    ORDER BY 1
"""


def _refuse_dependents(conn: sa.Connection, oids: list[int]) -> None:
    """ConfigError if anything but the given tables (the target's that the backup replaces) depends on them."""
    dependents = conn.execute(sa.text(_DEPENDENTS), {"oids": oids}).scalars().all() if oids else []
    if dependents:
        raise ConfigError(f"--force would drop what depends on the target's tables that the backup replaces: "
                          f"{', '.join(dependents[:10])}; drop or save them first, or restore into an empty database")


def discard_aside(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {engine.dialect.identifier_preparer.quote_schema(ASIDE_SCHEMA)} CASCADE")
    log.info("dropped the target's previous tables (schema %s)", ASIDE_SCHEMA)


def undo_restore(engine: sa.Engine, restored: list[str], moved: list[tuple[str, str]]) -> None:
    """After a failed restore, in one transaction: the backup's tables (``name`` or ``schema.name``)
    that the restore created go, and the tables ``set_aside`` moved return."""
    preparer = engine.dialect.identifier_preparer
    with engine.begin() as conn:
        for key in restored:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_manifest_table(preparer, key)} CASCADE")
        for schema, name in moved:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_qualified(preparer, schema, name)} CASCADE")
        for schema, name in moved:
            conn.exec_driver_sql(f"ALTER TABLE {_qualified(preparer, ASIDE_SCHEMA, name)} "
                                 f"SET SCHEMA {preparer.quote_schema(schema)}")
        if moved:
            conn.exec_driver_sql(f"DROP SCHEMA {preparer.quote_schema(ASIDE_SCHEMA)}")
    log.info("removed the restored tables%s", f" and put the target's {len(moved)} tables back" if moved else "")


def restore(url: str, dump_path: Path, scratch: Path) -> None:
    """pg_restore into the target in one transaction: on any error the target is left as it was.

    Ownership and privileges are not restored (``--no-owner --no-privileges``): roles belong to the
    cluster, and the target may be another one. Objects belong to the restoring user.
    """
    database = make_url(url).database
    if not database:
        raise ConfigError("the restore target URL names no database")
    argv = [client_tool("pg_restore"), "--no-password", "--no-owner", "--no-privileges", "--exit-on-error",
            "--single-transaction", f"--dbname=dbname={_conninfo_value(database)}"]
    log_path = scratch / "pg_restore.log"
    with open(log_path, "wb") as stderr:
        returncode = subprocess.run([*argv, str(dump_path)], env=_env(url), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=stderr).returncode
    if returncode != 0:
        raise _failure("pg_restore", returncode, log_path, url)


def table_sums(engine: sa.Engine, tables: list[str]) -> tuple[dict[str, dict], list[str]]:
    """Checksums of the given tables of a (restored) database, from one consistent snapshot, and the
    names of its other tables (not read: the restoring user need not be allowed to)."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True) as conn:
        try:
            sums = checksums.postgres_table_sums(conn, only=set(tables))
            others = [key for key, _ in checksums.postgres_tables(conn)
                      if key not in sums and not key.startswith(f"{ASIDE_SCHEMA}.")]
            return sums, others
        finally:
            conn.rollback()
