"""Names and advisory locks in the warehouse, shared by the stages that read or write it (the
schema itself is the load stage's Alembic migrations)."""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

READINGS_TABLE = "biometric_readings"
DAILY_METRICS_TABLE = "daily_metrics"
DEAD_LETTERS_TABLE = "etl_dead_letters"
RUNS_TABLE = "etl_runs"
TABLES = (READINGS_TABLE, DAILY_METRICS_TABLE, DEAD_LETTERS_TABLE, RUNS_TABLE)

DEAD_LETTER_STATUSES = ("pending", "replayed", "discarded")

# PostgreSQL: the advisory lock of one day's data. A load holds it exclusively for its transaction,
# validate shared while it reads the day (``pg_advisory_*lock*(DAY_LOCK)`` with ``day_lock(day)``).
DAY_LOCK = "hashtext('biometrics_load'), :day_lock"
# PostgreSQL: the advisory lock a backup of one day holds from before its snapshot until its backup
# is published, so that two backups of the day run one after the other instead of each replacing
# files of the other's (``pg_advisory_lock(BACKUP_LOCK)`` with ``day_lock(day)``)
BACKUP_LOCK = "hashtext('biometrics_backup'), :day_lock"


def day_lock(day: dt.date) -> dict:
    return {"day_lock": day.toordinal()}


# PostgreSQL: the advisory lock that keeps the readings' partitions as they are. A load swapping its
# day in and a purge dropping old days hold it exclusively for their transaction; a backup holds it
# shared from before its snapshot until pg_dump and its checksums are done. A partition attached
# after the backup's snapshot holds rows written by COPY … FREEZE, which that snapshot sees, so its
# checksums counted a day that pg_dump (which lists the partitions as of the snapshot) left out: a
# backup published with exit 0 that could never be restored. And a DETACH queued behind the backup's
# lock on the table had pg_dump's own lock queue behind it, while the backup waited for pg_dump.
PARTITIONS_LOCK = "hashtext('biometrics_partitions'), 0"


def lock_partitions(conn: sa.Connection, log: logging.Logger) -> None:
    """Take ``PARTITIONS_LOCK`` for the rest of ``conn``'s transaction, waiting for a backup in
    progress however long it takes (the transaction's ``lock_timeout`` is for table locks)."""
    if conn.execute(sa.text(f"SELECT pg_try_advisory_xact_lock({PARTITIONS_LOCK})")).scalar():
        return
    log.info("waiting for a backup of the warehouse to finish before changing its partitions")
    timeout = conn.execute(sa.text("SELECT current_setting('lock_timeout')")).scalar()
    conn.execute(sa.text("SET LOCAL lock_timeout = 0"))
    conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({PARTITIONS_LOCK})"))
    conn.execute(sa.text("SELECT set_config('lock_timeout', :timeout, true)"), {"timeout": timeout})


def partition_name(day: dt.date) -> str:
    """The PostgreSQL partition of ``biometric_readings`` holding one day."""
    return f"{READINGS_TABLE}_p{day:%Y%m%d}"


def building_table(day: dt.date, run_id: str) -> str:
    """The table a PostgreSQL load of ``day`` builds the day's readings in, before it becomes the
    day's partition (committed and unattached meanwhile, and left behind by a killed load)."""
    return f"{partition_name(day)}_{run_id[:10]}"


def building_table_regex(day: dt.date | None = None) -> str:
    """A regular expression (PostgreSQL's ``~``) of the building tables of ``day``, or of any day."""
    prefix = partition_name(day) if day else f"{READINGS_TABLE}_p[0-9]{{8}}"
    return f"^{prefix}_[0-9a-f]{{10}}$"
