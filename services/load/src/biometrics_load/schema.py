"""Create or upgrade the warehouse schema with Alembic (idempotent, safe to run concurrently)."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: sa.Engine) -> tuple[str | None, str]:
    """Upgrade to head; returns (revision before, revision after)."""
    config = _config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # two loads starting at once must not both create the tables
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('biometrics_warehouse_migrate'))"))
        before = current_revision(conn)
        if before != head_revision():
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            log.info("warehouse schema upgraded from %s to %s", before or "empty", head_revision())
        after = current_revision(conn)
    return before, after
