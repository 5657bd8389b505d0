"""Where backups live in staging and what their ``manifest.json`` holds.

A backup is one folder, ``<staging>/backups/<date>/``, with the dump and ``manifest.json``::

    {"format": "biometrics-backup/1", "dialect": "postgresql", "date": "2024-05-01",
     "dump": "warehouse-0c5e7d1a2b3f.dump", "files": {"warehouse-0c5e7d1a2b3f.dump": {"bytes": 123, "sha256": "…"}},
     "checksum_algorithm": "…", "tables": {"biometric_readings": {"rows": 9, "checksum": "…"}}, …}

``files`` lists every file of the folder but the manifest itself; ``tables`` the row count and
content checksum of every table at the moment of the dump (see ``checksums``). The dump is named
after its run: on S3, which cannot rename, a new backup's dump goes up beside the previous one and
its manifest after it, so the previous backup stays whole until the new one is (older backups'
dumps are ``warehouse.dump`` / ``warehouse.sqlite3``: the manifest names its dump either way).
"""

from __future__ import annotations

import datetime as dt
import re

from biometrics_core.errors import InputError

FORMAT = "biometrics-backup/1"
BACKUPS_DIR = "backups"
MANIFEST = "manifest.json"
DUMP_SUFFIXES = {"postgresql": ".dump", "sqlite": ".sqlite3"}


def dump_file(dialect: str, run_id: str) -> str:
    """The name of a run's dump."""
    return f"warehouse-{run_id[:12]}{DUMP_SUFFIXES[dialect]}"

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def backup_rel(day: dt.date) -> str:
    """The backup folder of a day, relative to the staging path."""
    return f"{BACKUPS_DIR}/{day.isoformat()}"


def folder_day(name: str) -> dt.date | None:
    """The date a folder is named after (``YYYY-MM-DD``), or None."""
    if not _DAY.match(name):
        return None
    try:
        return dt.date.fromisoformat(name)
    except ValueError:
        return None


def check_manifest(manifest: dict, where: str) -> dict:
    """The manifest if it is one this version can restore; InputError (exit 2) otherwise."""
    if not isinstance(manifest, dict):
        raise InputError(f"{where} is not a {FORMAT} manifest (not a JSON object)")
    if manifest.get("format") != FORMAT:
        raise InputError(f"{where} is not a {FORMAT} manifest (format={manifest.get('format')!r})")
    dialect = manifest.get("dialect")
    if dialect not in DUMP_SUFFIXES:
        raise InputError(f"{where}: unsupported dialect {dialect!r}")
    files, tables = manifest.get("files"), manifest.get("tables")
    if not isinstance(files, dict) or manifest.get("dump") not in files:
        raise InputError(f"{where}: the manifest does not list its dump file")
    for name, info in files.items():
        if "/" in name or name.startswith(".") or not isinstance(info, dict) \
                or not isinstance(info.get("sha256"), str) or not isinstance(info.get("bytes"), int):
            raise InputError(f"{where}: invalid file entry {name!r}")
    if not isinstance(tables, dict) or not all(
            isinstance(t, dict) and isinstance(t.get("rows"), int) and isinstance(t.get("checksum"), str)
            for t in tables.values()):
        raise InputError(f"{where}: the manifest has no valid table checksums")
    return manifest
