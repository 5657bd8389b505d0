"""Database access: engines from settings, connection errors as one-line configuration errors."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from .errors import ConfigError
from .redact import one_line, redact

log = logging.getLogger(__name__)


_HOST_WITH_PORT = re.compile(r"(?:\[[^\]]*\]|[^:/\[\]]+):[0-9]+")  # h:5432 or [::1]:5432, not ::1 or a socket


def parse_url(url: str, variable: str) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(f"{variable} is not a valid SQLAlchemy URL") from None
    if parsed.host and "@" in parsed.host:  # the URL is not echoed: the part after the '@' is the password's
        raise ConfigError(f"{variable}: its user or password holds an unencoded '@' (write it as %40)")
    if parsed.drivername == "postgresql":
        # SQLAlchemy 2.1 takes psycopg 3 for a bare postgresql://; the stages ship psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg2")
    hosts = parsed.query.get("host", ())
    for host in (hosts,) if isinstance(hosts, str) else hosts:
        if _HOST_WITH_PORT.fullmatch(host):
            # psycopg2 takes it; libpq's own tools (pg_dump, ADBC's COPY) read it as a host name
            raise ConfigError(f"{variable}: give the port as port=… or in host:port before the database, "
                              "not inside the host parameter")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with its passwords (in the user part or as a query parameter) hidden, for messages and manifests."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "<invalid url>"
    return redact(parsed.render_as_string(hide_password=True))  # redact() masks the query's password too


def connect(url: str, variable: str, purpose: str, *, must_exist: bool = True) -> Engine:
    """An engine that has been proven to connect; ConfigError (exit 2) otherwise."""
    parsed = parse_url(url, variable)
    if parsed.get_backend_name() == "sqlite" and must_exist:
        database = parsed.database or ""
        if database not in ("", ":memory:") and not Path(database).exists():
            raise ConfigError(f"the {purpose} does not exist: {safe_url(parsed)} ({variable})")
    try:
        # an error's text leaves out its statement's bound values: readings are health data
        engine = sa.create_engine(parsed, pool_pre_ping=True, hide_parameters=True)
        if engine.dialect.name == "sqlite":
            _sqlite_pragmas(engine)  # before the first connection, which the pool keeps
        elif is_postgres(engine):
            _session_settings(engine)
        with engine.connect():
            pass
    except (NoSuchModuleError, ImportError):  # an unknown dialect, or a known one whose driver is not installed
        raise ConfigError(f"{variable}: unsupported database driver in {safe_url(parsed)} "
                          "(use postgresql+psycopg2:// or sqlite:///)") from None
    except DBAPIError as exc:
        raise ConfigError(f"cannot connect to the {purpose} ({safe_url(parsed)}): "
                          f"{one_line(redact(str(exc.orig), (parsed.password or '',)))}") from None
    return engine


# Settings of every PostgreSQL session of the stages, whatever the server's or the database's:
# - UTC: a source column without a time zone is then read as UTC by every stage alike (the extract's
#   COPY compares it with UTC literals; a timestamptz parameter was converted in the session's zone,
#   and validate counted another day than the extract had staged)
# - no idle-in-transaction limit: a stage's transaction waits, idle, by design while other
#   connections work for it (the load's day while the readings are copied and indexed, the
#   backup's snapshot while pg_dump reads it); a limit meant for forgotten sessions ended them
_SESSION_SETTINGS = ("SET TIME ZONE 'UTC'", "SET idle_in_transaction_session_timeout = 0")


def _session_settings(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - trivial
        cursor = dbapi_conn.cursor()
        for statement in _SESSION_SETTINGS:
            cursor.execute(statement)
        cursor.close()
        dbapi_conn.commit()  # a session setting made in a transaction that rolled back would be undone


def _sqlite_pragmas(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - trivial
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def require_warehouse_tables(engine: Engine, then: str) -> None:
    """ConfigError unless the warehouse has every table of the schema (``then``: what to do after
    migrating). An empty database is no warehouse: a stage working on it would report nothing to do."""
    from .warehouse import TABLES
    present = set(sa.inspect(engine).get_table_names())
    missing = [t for t in TABLES if t not in present]
    if missing:
        raise ConfigError(f"the warehouse ({safe_url(engine.url)}) has no table {', '.join(missing)}: "
                          f"run biometrics-load migrate, then {then}")


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def set_local_memory(conn: sa.Connection, parameter: str, value: str, variable: str) -> None:
    """``SET LOCAL`` a PostgreSQL memory parameter (``work_mem``, ``maintenance_work_mem``) from the
    setting ``variable``. A value the server refuses is a ConfigError naming the setting, and the
    transaction stays usable (the attempt runs in a savepoint)."""
    with conn.begin_nested():
        try:
            conn.execute(sa.text("SELECT set_config(:parameter, :value, true)"), {"parameter": parameter, "value": value})
        except DBAPIError as exc:
            reason = str(getattr(exc.orig, "diag", None) and exc.orig.diag.message_primary or "").strip()
            raise ConfigError(f"{variable}={value!r} is not a PostgreSQL memory size (such as 256MB or 1GB): "
                              f"{reason}") from None


def libpq_env(url: str | URL) -> dict[str, str]:
    """PG* environment variables for client tools (pg_dump): keeps the password out of argv."""
    parsed = make_url(url) if isinstance(url, str) else url
    env = {}
    if parsed.host:
        env["PGHOST"] = parsed.host
    if parsed.port:
        env["PGPORT"] = str(parsed.port)
    if parsed.username:
        env["PGUSER"] = parsed.username
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    if parsed.database:
        env["PGDATABASE"] = parsed.database
    query = {k: (v if isinstance(v, str) else v[0]) for k, v in parsed.query.items()}
    # libpq's own query parameters, which psycopg2 honours, so the tools must too
    for option, variable in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("password", "PGPASSWORD")):
        if query.get(option) and variable not in env:
            env[variable] = query[option]  # host: also a Unix socket directory
    for option, variable in _LIBPQ_QUERY_ENV.items():
        if query.get(option):
            env[variable] = query[option]
    return env


# URL query options that libpq tools take from the environment
_LIBPQ_QUERY_ENV = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT",
                    "sslkey": "PGSSLKEY", "connect_timeout": "PGCONNECT_TIMEOUT", "options": "PGOPTIONS",
                    "application_name": "PGAPPNAME"}


class _ChunkReader(io.RawIOBase):
    """A read()-able stream over an iterator of byte chunks (feeds COPY FROM STDIN)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def copy_in(connection: sa.Connection, copy_sql: str, chunks: Iterable[bytes]) -> None:
    """Run ``COPY … FROM STDIN`` on the connection's transaction, streaming the chunks."""
    dbapi = connection.connection.dbapi_connection
    with dbapi.cursor() as cursor:
        cursor.copy_expert(copy_sql, io.BufferedReader(_ChunkReader(chunks), buffer_size=1 << 20), size=1 << 20)
