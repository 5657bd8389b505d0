"""SQLite: copies with the online backup API (consistent while other connections write)."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import make_url

from biometrics_core.errors import ConfigError

from . import checksums

log = logging.getLogger(__name__)


def database_path(url: str, what: str) -> Path:
    """The file of a SQLite URL; in-memory databases cannot be backed up or restored into."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ConfigError(f"the {what} must be a SQLite database file, not {database or 'in-memory'!r}")
    return Path(database).expanduser().absolute()


def _readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)


def dump(url: str, target: Path) -> dict:
    """Copy the warehouse into the file ``target`` (one backup step: a single consistent read) and
    return the manifest facts, the table checksums computed on the copy."""
    source = database_path(url, "warehouse")
    log.info("SQLite backup of %s", source)
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)  # pages=-1: everything in one step under one read lock
        dst.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal/-shm
    return {"server_version": sqlite3.sqlite_version, "tables": checksums.sqlite_table_sums(target)}


def is_empty(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return True
    try:
        with closing(_readonly(path)) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"the restore target {path} is not a usable SQLite database: {exc}") from None
    return count == 0


def restore(dump_path: Path, target: Path) -> None:
    """Replace the target database's content with the dump's (the backup API, one transaction)."""
    if not target.parent.is_dir():
        raise ConfigError(f"the restore target's folder does not exist: {target.parent}")
    with closing(_readonly(dump_path)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def table_sums(path: Path) -> dict[str, dict]:
    return checksums.sqlite_table_sums(path)
