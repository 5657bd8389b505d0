"""``biometrics-load``: the warehouse schema and the day's load."""

from __future__ import annotations

import logging

from biometrics_core import db, schemas, settings
from biometrics_core.cli import StageRun, stage_command, stage_group
from biometrics_core.errors import ConfigError
from biometrics_core.manifest import RunManifest, required_upstream_manifest, upstream_manifest

from . import loader
from .inputs import check_staged_day
from .schema import migrate as migrate_schema

log = logging.getLogger(__name__)

main = stage_group("load", "Load stage of the BIOMETRICS ETL.")


def _warehouse(url: str | None = None):
    engine = db.connect(url or settings.warehouse_url(), "BIOMETRICS_WAREHOUSE_URL", "warehouse", must_exist=False)
    if db.is_postgres(engine) and engine.dialect.driver != "psycopg2":
        # the day's COPY streams through psycopg2's copy_expert; refused before anything is migrated
        engine.dispose()
        raise ConfigError(f"BIOMETRICS_WAREHOUSE_URL: the load needs the psycopg2 driver "
                          f"(postgresql+psycopg2:// or postgresql://), not {engine.dialect.driver}")
    return engine


@stage_command(main, "migrate", help="Create or upgrade the warehouse schema (idempotent).", dated=False, staged=False)
def migrate(run: StageRun):
    engine = _warehouse()
    before, after = migrate_schema(engine)
    run.manifest.details = {"revision_before": before, "revision_after": after, "warehouse": db.safe_url(engine.url)}
    engine.dispose()
    return run.manifest


def _upstream_manifests(run: StageRun) -> dict[str, dict | None]:
    """The extract's and the transform's manifests of the day (recorded in etl_runs); another day's stop the run."""
    return {stage: upstream_manifest(run.staging, stage, run.day) for stage in ("extract", "transform")}


@stage_command(main, "readings", help="Load the day's transformed readings, metrics and dead letters (replaces the day).")
def readings(run: StageRun):
    batch_size = settings.batch_size()
    warehouse_url = settings.warehouse_url()
    staging = run.staging
    upstream = _upstream_manifests(run)
    data = loader.DayData(  # inputs first: a missing one stops the run before the warehouse is touched
        readings=staging.parquet_dataset(schemas.TRANSFORM_READINGS, schemas.CLEAN_READINGS),
        daily_metrics=staging.parquet_dataset(schemas.TRANSFORM_DAILY_METRICS, schemas.DAILY_METRICS),
        dead_letters=staging.parquet_dataset(schemas.TRANSFORM_DEAD_LETTERS, schemas.DEAD_LETTERS),
        manifests=[RunManifest.from_dict(payload) for payload in upstream.values() if payload is not None],
    )
    # the transform's manifest is required (read above with the extract's; looked up again only to
    # say it is missing)
    transformed = upstream["transform"] or required_upstream_manifest(
        staging, "transform", run.day, "the load checks the staged files against it")
    staged = check_staged_day(staging, run.day, transformed, {
        "readings": data.readings, "daily metrics": data.daily_metrics, "dead letters": data.dead_letters})
    engine = _warehouse(warehouse_url)
    migrate_schema(engine)
    run.manifest.rows_in = staged["readings"] + staged["dead letters"]
    counts = loader.load_day(engine, run.day, data, batch_size, run.manifest, run.finish,
                             settings.get("BIOMETRICS_LOAD_MAINTENANCE_WORK_MEM"))
    engine.dispose()
    run.manifest.rows_out = counts.readings
    run.manifest.details = {
        "readings": counts.readings, "daily_metrics": counts.daily_metrics, "dead_letters": counts.dead_letters,
        "replaced_readings": counts.replaced_readings, "warehouse": db.safe_url(engine.url),
    }
    run.manifest.outputs = [f"{db.safe_url(engine.url)}#biometric_readings/date={run.day}"]
    log.info("loaded %s: %d readings, %d daily metrics, %d dead letters (replaced %d readings)", run.day,
             counts.readings, counts.daily_metrics, counts.dead_letters, counts.replaced_readings)
    return run.manifest
