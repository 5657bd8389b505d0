"""File checksums (SHA-256) and per-table content checksums.

A table's content checksum is order-independent: the sum, as an exact integer, of the first 64
bits (signed, big-endian) of the MD5 of each row's text. Rows can come back in any order after a
restore and the sum stays the same; a changed, lost or extra row changes it.

- PostgreSQL: computed in the database in one scan per table (``row::text``), so it scales to
  tens of millions of rows without moving them to the client. The session settings that shape a
  row's text (time zone, date and float output) are pinned first.
- SQLite: streamed in Python; a row's text is the JSON array of its values.

The two dialects' checksums are not comparable with each other, only with the same dialect's.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import sqlalchemy as sa

ALGORITHMS = {
    "postgresql": "md5-sum64: sum of the first 64 bits (signed) of md5(row::text) with TimeZone=UTC, "
                  "DateStyle=ISO,YMD, IntervalStyle=postgres, extra_float_digits=1, bytea_output=hex",
    "sqlite": "md5-sum64: sum of the first 64 bits (signed) of md5(JSON array of the row's values)",
}

_CHUNK = 1 << 20
_PG_SETTINGS = (
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL extra_float_digits = 1",
    "SET LOCAL bytea_output = 'hex'",
)
# every ordinary or partitioned table outside the system schemas; partitions count in their parent
_PG_TABLES = """
    SELECT n.nspname, c.relname, format('%I.%I', n.nspname, c.relname)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
    ORDER BY 1, 2
"""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _table_key(schema: str, name: str) -> str:
    return name if schema == "public" else f"{schema}.{name}"


def row_hash64(text: str) -> int:
    """The 64-bit value a row's text contributes (same as PostgreSQL's ``('x'||left(md5(t),16))::bit(64)::bigint``)."""
    return int.from_bytes(hashlib.md5(text.encode(), usedforsecurity=False).digest()[:8], "big", signed=True)


def postgres_tables(conn: sa.Connection) -> list[tuple[str, str]]:
    """(manifest key, quoted qualified name) of every user table."""
    return [(_table_key(schema, name), qualified) for schema, name, qualified in conn.execute(sa.text(_PG_TABLES))]


def postgres_table_sums(conn: sa.Connection, only: set[str] | None = None,
                        skip: re.Pattern | None = None) -> dict[str, dict]:
    """{table: {"rows", "checksum"}} inside the connection's current transaction (and snapshot), of
    every user table, or ``only`` those, but those whose name matches ``skip``."""
    for statement in _PG_SETTINGS:
        conn.exec_driver_sql(statement)
    sums = {}
    for key, qualified in postgres_tables(conn):
        if (only is not None and key not in only) or (skip is not None and skip.match(key.rpartition(".")[2])):
            continue
        rows, total = conn.exec_driver_sql(
            f"SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint), 0) "
            f"FROM {qualified} AS t").one()
        sums[key] = {"rows": int(rows), "checksum": str(int(total))}
    return sums


def _json_default(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    raise TypeError(type(value).__name__)


def _sqlite_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sqlite_table_sums(path: str | Path, batch_size: int = 10_000) -> dict[str, dict]:
    """{table: {"rows", "checksum"}} of a SQLite database file, streamed, read-only."""
    with closing(sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)) as conn:
        conn.execute("BEGIN")  # one read snapshot for all tables
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY name")]
        sums = {}
        for name in names:
            rows = total = 0
            cursor = conn.execute(f"SELECT * FROM {_sqlite_quote(name)}")
            while batch := cursor.fetchmany(batch_size):
                for row in batch:
                    text = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=_json_default)
                    total += row_hash64(text)
                rows += len(batch)
            sums[name] = {"rows": rows, "checksum": str(total)}
        conn.execute("ROLLBACK")
    return sums


def compare(expected: dict[str, dict], actual: dict[str, dict]) -> list[str]:
    """Human-readable differences between the manifest's tables and a database's (empty: equal)."""
    problems = []
    for table, want in sorted(expected.items()):
        got = actual.get(table)
        if got is None:
            problems.append(f"{table}: missing")
        elif got["rows"] != want["rows"]:
            problems.append(f"{table}: {got['rows']} rows, expected {want['rows']}")
        elif got["checksum"] != want["checksum"]:
            problems.append(f"{table}: content checksum differs")
    return problems
