"""``create`` and ``restore``: the dialect-independent steps around the dumps."""

from __future__ import annotations

import datetime as dt
import json
import logging
from contextlib import nullcontext
from pathlib import Path

import sqlalchemy as sa

from biometrics_core import db, runlog, settings
from biometrics_core.cli import StageRun, classify
from biometrics_core.errors import EXIT_USAGE, ConfigError, EtlError, InputError, StageFailed
from biometrics_core.manifest import RunManifest, upstream_manifest
from biometrics_core.staging import scratch_dir as staging_scratch_dir
from biometrics_core.staging import Staging

from . import checksums, dump_postgres, dump_sqlite, layout

log = logging.getLogger(__name__)


def scratch_dir():
    """A private local directory outside any staging location (a backup folder stays as published)."""
    return staging_scratch_dir(prefix="biometrics-backup-")


# -- create ---------------------------------------------------------------------------------------
def create(run: StageRun) -> RunManifest:
    upstream_manifest(run.staging, "extract", run.day)  # a staging path of another day: its backups are that day's
    url = settings.warehouse_url()
    engine = db.connect(url, "BIOMETRICS_WAREHOUSE_URL", "warehouse")
    rel = layout.backup_rel(run.day)
    location = run.staging.uri(rel)
    try:
        dialect = "postgresql" if db.is_postgres(engine) else engine.dialect.name
        if dialect not in layout.DUMP_SUFFIXES:
            raise ConfigError(f"cannot back up a {dialect} warehouse: PostgreSQL and SQLite are supported")
        # a database without the warehouse's tables (a mistyped URL, an unmigrated warehouse) would
        # replace the day's backup with an empty one
        db.require_warehouse_tables(engine, "load a day before backing it up")
        # on PostgreSQL two backups of the day take turns: on S3 the later one's publish deleted the
        # dump the earlier one's manifest, written after it, then named
        lock = dump_postgres.day_backup_lock(engine, run.day) if dialect == "postgresql" else nullcontext()
        with lock, run.staging.workdir() as work:
            out = work / "backup"
            out.mkdir()
            dump_path = out / layout.dump_file(dialect, run.manifest.run_id)
            if dialect == "postgresql":
                facts = dump_postgres.dump(engine, url, dump_path, work)
            else:
                facts = dump_sqlite.dump(url, dump_path)
            manifest = {
                "format": layout.FORMAT, "dialect": dialect, "date": run.day.isoformat(),
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(), "run_id": run.manifest.run_id,
                "source": db.safe_url(url), "dump": dump_path.name,
                "files": {dump_path.name: checksums.file_entry(dump_path)},
                "checksum_algorithm": checksums.ALGORITHMS[dialect], **facts,
            }
            (out / layout.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            run.staging.publish(out, rel, last=(layout.MANIFEST,))  # the manifest commits the backup
        tables = manifest["tables"]
        rows = sum(t["rows"] for t in tables.values())
        size = manifest["files"][dump_path.name]["bytes"]
        log.info("backup of %d tables (%d rows, %d bytes) published to %s", len(tables), rows, size, location)
        run.manifest.rows_in = run.manifest.rows_out = rows
        run.manifest.outputs = [location]
        run.manifest.details = {"location": location, "dialect": dialect, "bytes": size,
                                "sha256": manifest["files"][dump_path.name]["sha256"],
                                "tables": {name: t["rows"] for name, t in tables.items()}}
        runlog.record_run(engine, run.finish())  # after the dump: its own row is not part of the backup
    finally:
        engine.dispose()
    return run.manifest


# -- restore --------------------------------------------------------------------------------------
def _local_files(where: Staging, manifest: dict, work: Path) -> dict[str, Path]:
    """Local paths of the backup's files: in place on local staging, downloaded from S3."""
    paths = {}
    for name in manifest["files"]:
        if not where.exists(name):
            raise StageFailed(f"the backup file {where.uri(name)} is missing: the backup is incomplete, "
                              "nothing was restored")
        if where.is_local:
            paths[name] = Path(where.path(name))
        else:
            paths[name] = work / name
            where.download(name, paths[name])
    return paths


def verify_files(where: Staging, manifest: dict, paths: dict[str, Path]) -> None:
    """Sizes and SHA-256 of every file against the manifest; StageFailed (exit 1) on any difference."""
    for name, want in manifest["files"].items():
        size = paths[name].stat().st_size
        if size != want["bytes"]:
            raise StageFailed(f"backup file {where.uri(name)} has {size} bytes, the manifest says {want['bytes']}: "
                              "the backup is damaged, nothing was restored")
        if checksums.sha256_file(paths[name]) != want["sha256"]:
            raise StageFailed(f"SHA-256 of {where.uri(name)} does not match the manifest: "
                              "the backup is damaged, nothing was restored")
    log.info("verified SHA-256 of %s", ", ".join(manifest["files"]))


def restore(run: StageRun, source: str | None, target_url: str | None, force: bool) -> RunManifest:
    if source:
        where = Staging(source)
    elif run.day and run.staging:
        where = run.staging.child(layout.backup_rel(run.day))
    else:
        raise ConfigError("restore needs --from <backup location>, or --date with --staging-path")
    variable = "--target-url" if target_url else "BIOMETRICS_RESTORE_TARGET_URL"
    target_url = target_url or settings.require("BIOMETRICS_RESTORE_TARGET_URL", "restore target database URL")
    manifest = layout.check_manifest(where.read_json(layout.MANIFEST), where.uri(layout.MANIFEST))
    if run.day and manifest.get("date") != run.day.isoformat():  # with --from too: --date says which day is meant
        raise InputError(f"{where.uri(layout.MANIFEST)} is the backup of {manifest.get('date')}, not of {run.day}")
    dialect = manifest["dialect"]
    target_dialect = db.parse_url(target_url, variable).get_backend_name()
    if target_dialect != dialect:
        raise ConfigError(f"the backup at {where.uri()} is a {dialect} backup: it cannot be restored into "
                          f"{target_dialect} ({db.safe_url(target_url)})")
    engine = None
    try:
        # the target is only read until the backup's files are verified
        if dialect == "postgresql":
            engine = db.connect(target_url, variable, "restore target database")
            empty = dump_postgres.is_empty(engine)
        else:
            target_path = dump_sqlite.database_path(target_url, "restore target")
            empty = dump_sqlite.is_empty(target_path)
        if not empty and not force:
            raise ConfigError(f"the restore target {db.safe_url(target_url)} is not empty: restore into an empty "
                              "database, or pass --force to replace what the backup holds")
        with scratch_dir() as work:
            paths = _local_files(where, manifest, work)
            verify_files(where, manifest, paths)
            dump_path = paths[manifest["dump"]]
            log.info("restoring %s into %s", where.uri(), db.safe_url(target_url))
            if dialect == "postgresql":
                actual, others = _restore_postgres(engine, target_url, dump_path, work, manifest["tables"], empty)
            else:
                actual, others = _restore_sqlite(dump_path, target_path, manifest["tables"])
    finally:
        if engine is not None:
            engine.dispose()
    expected = manifest["tables"]
    rows = sum(t["rows"] for t in expected.values())
    run.manifest.rows_in = rows
    run.manifest.outputs = [db.safe_url(target_url)]
    run.manifest.details = {"from": where.uri(), "backup_date": manifest.get("date"), "dialect": dialect,
                            "tables": {name: t["rows"] for name, t in expected.items()}}
    if others:
        log.warning("the target has tables the backup does not: %s", ", ".join(others))
        run.manifest.details["extra_tables"] = others
    run.manifest.rows_out = rows
    log.info("restored and verified %d tables (%d rows)", len(expected), rows)
    return run.manifest


def _differs(problems: list[str], what: str) -> StageFailed:
    return StageFailed(f"{what} differs from the backup's manifest: {'; '.join(problems)}")


def _restore_postgres(engine: sa.Engine, url: str, dump_path: Path, work: Path, expected: dict[str, dict],
                      empty: bool) -> tuple[dict[str, dict], list[str]]:
    """pg_restore, then the restored tables compared with the manifest. Whatever fails, the target is
    left as it was: what was restored is dropped and, with --force, the target's tables set aside
    return (pg_restore commits before its tables can be verified)."""
    tables = list(expected)
    moved = [] if empty else dump_postgres.set_aside(engine, tables)
    try:
        dump_postgres.restore(url, dump_path, work)
        actual, others = dump_postgres.table_sums(engine, tables)
        problems = checksums.compare(expected, actual)
        if problems:
            raise _differs(problems, "the restored database")
    except BaseException as exc:
        dump_postgres.undo_restore(engine, tables, moved)
        undone = "the target's tables were put back as they were" if moved else "the restore was undone"
        if isinstance(exc, EtlError):
            raise type(exc)(f"{undone}: {exc}") from None
        if isinstance(exc, Exception):  # a database error or any other, with the code the CLI gives it
            message, code = classify(exc)
            raise (ConfigError if code == EXIT_USAGE else StageFailed)(f"{undone}: {message}") from None
        raise
    if moved:
        dump_postgres.discard_aside(engine)
    return actual, others


def _restore_sqlite(dump_path: Path, target: Path, expected: dict[str, dict]) -> tuple[dict[str, dict], list[str]]:
    """The dump is a database file: its tables are compared with the manifest before it replaces the
    target (in one step), so a manifest that does not match costs the target nothing."""
    problems = checksums.compare(expected, dump_sqlite.table_sums(dump_path))
    if problems:
        raise _differs(problems, "the backup's database (nothing was restored)")
    dump_sqlite.restore(dump_path, target)
    actual = dump_sqlite.table_sums(target)
    problems = checksums.compare(expected, actual)
    if problems:
        raise _differs(problems, "the restored database")
    return actual, sorted(set(actual) - set(expected))
