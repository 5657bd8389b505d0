"""``biometrics-backup``: back up the warehouse, restore a backup, purge data past retention."""

from __future__ import annotations

import datetime as dt
import logging

import click

from biometrics_core import db, runlog, settings
from biometrics_core.cli import StageRun, stage_command, stage_group
from biometrics_core.errors import ConfigError

from . import backup, purge as retention

log = logging.getLogger(__name__)

main = stage_group("backup", "Backup stage of the BIOMETRICS ETL: backups of the warehouse, restore, retention.")


@stage_command(main, "create", help=(
    "Back up the warehouse (BIOMETRICS_WAREHOUSE_URL) to <staging-path>/backups/<date>/: a pg_dump custom-format "
    "archive (PostgreSQL) or a SQLite backup-API copy, and manifest.json with the files' sizes and SHA-256 and "
    "each table's row count and content checksum. The run is recorded in etl_runs."))
def create(run: StageRun):
    return backup.create(run)


# --staging-path is optional here (with --from), so the command declares it itself instead of staged=True
@stage_command(main, "restore", staged=False, date_required=False, help=(
    "Restore a backup into an empty database, after verifying the SHA-256 of its files; then verify every "
    "table's row count and content checksum against the manifest. The backup is --from, or "
    "<staging-path>/backups/<date>. The target is BIOMETRICS_RESTORE_TARGET_URL: prefer it to --target-url, "
    "whose value (and password) is visible in process lists and Airflow's rendered commands. A PostgreSQL "
    "target database must exist; ownership and privileges are not restored."))
@click.option("--staging-path", metavar="URL", default=None,
              help="Staging location whose backups/<date> to restore (with --date).")
@click.option("--from", "source", metavar="URL", default=None,
              help="Backup location (folder with manifest.json): file:///path, a local path or s3://bucket/prefix.")
@click.option("--target-url", metavar="URL", default=None,
              help="Target database (SQLAlchemy URL); default $BIOMETRICS_RESTORE_TARGET_URL (preferred).")
@click.option("--force", is_flag=True, help=(
    "Restore into a non-empty target, replacing the tables the backup holds. SQLite: the whole file, in one "
    "step. PostgreSQL: the target's tables are moved into the schema biometrics_restore_previous first, dropped "
    "once the restored tables are verified, and moved back if the restore or its verification fails; a view or "
    "foreign key that depends on them is refused (it would be dropped with them)."))
def restore(run: StageRun, source: str | None, target_url: str | None, force: bool):
    return backup.restore(run, source, target_url, force)


@stage_command(main, "purge", help=(
    "Drop warehouse data and staging folders older than --retention-days before --date: readings partitions "
    "(PostgreSQL) or rows (SQLite), daily metrics, dead letters and run records; backups/<date>/ and top-level "
    "<date>/ folders of the staging path. Idempotent."))
@click.option("--retention-days", type=click.IntRange(min=1), default=None, metavar="N",
              help="Days to keep (default $BIOMETRICS_RETENTION_DAYS, 90).")
def purge(run: StageRun, retention_days: int | None):
    days = retention_days or settings.get_int("BIOMETRICS_RETENTION_DAYS")
    try:
        cutoff = run.day - dt.timedelta(days=days)
    except OverflowError:
        raise ConfigError(f"a retention of {days} days before {run.day} reaches before year 1") from None
    log.info("purging everything older than %s (%d days before %s)", cutoff, days, run.day)
    url = settings.warehouse_url()
    engine = db.connect(url, "BIOMETRICS_WAREHOUSE_URL", "warehouse")
    try:
        folders = retention.staging_to_purge(run.staging, cutoff)  # staging proven readable first
        warehouse = retention.purge_warehouse(engine, cutoff)
        staged = retention.purge_staging(run.staging, folders)
        run.manifest.details = {"cutoff": cutoff.isoformat(), "retention_days": days, **warehouse,
                                "deleted_staging": staged}
        runlog.record_run(engine, run.finish())
    finally:
        engine.dispose()
    return run.manifest

