"""Create or upgrade the warehouse schema with Alembic (idempotent, safe to run concurrently)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions (a test checks it against Alembic's own head). Every
# load first checks the warehouse is at it: known here, that check needs no Alembic, whose import
# cost each load 0.2-0.3 s of its start; Alembic is imported only when there is something to upgrade.
HEAD_REVISION = "0002"
VERSION_TABLE = "alembic_version"  # Alembic's default


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The head as Alembic finds it in the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(conn: sa.Connection) -> str | None:
    """The revision recorded in the warehouse, None for an empty one."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def migrate(engine: sa.Engine) -> tuple[str | None, str]:
    """Upgrade to head; returns (revision before, revision after)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # two loads starting at once must not both create the tables
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('biometrics_warehouse_migrate'))"))
        before = current_revision(conn)
        if before == HEAD_REVISION:
            return before, before
        from alembic import command

        config = _config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        after = current_revision(conn)
        log.info("warehouse schema upgraded from %s to %s", before or "empty", after)
    return before, after
