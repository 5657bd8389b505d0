"""Talk to PostgreSQL through the psql client, so the orchestrator needs only the stdlib."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from pgcluster import PG_BIN_CANDIDATES


def psql_bin() -> str:
    for d in ([os.environ["BENCH_PG_BIN"]] if os.environ.get("BENCH_PG_BIN") else []) + list(PG_BIN_CANDIDATES):
        if (Path(d) / "psql").exists():
            return str(Path(d) / "psql")
    found = shutil.which("psql")
    if not found:
        raise RuntimeError("psql not found: apt-get install -y postgresql-client")
    return found


PSQL = None
BENCH_TAG = "/* bench */ "  # marks the bench's own statements in the server log


def psql_cmd(url: str) -> list[str]:
    global PSQL
    PSQL = PSQL or psql_bin()
    return [PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url]


def psql(url: str, sql: str) -> str:
    """Run SQL (one or more statements, one transaction each) and return unaligned output."""
    r = subprocess.run(psql_cmd(url), input=BENCH_TAG + sql, capture_output=True, text=True,
                       env={**os.environ, "PGTZ": "UTC", "PGOPTIONS": "-c client_min_messages=warning"})
    if r.returncode != 0:
        raise RuntimeError(f"psql failed ({r.returncode}): {r.stderr.strip()}\nSQL: {sql[:500]}")
    return r.stdout.strip()


def recreate_database(server, name: str) -> str:
    admin = server.admin_url
    psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(admin, f'CREATE DATABASE "{name}"')
    return server.url(name)


def database_exists(server, name: str) -> bool:
    return psql(server.admin_url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1"
