"""``biometrics-validate``: prove the loaded day complete and consistent, or exit 1 naming the checks."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from biometrics_core import db, runlog, settings
from biometrics_core.cli import StageRun, stage_command, stage_group
from biometrics_core.errors import DataQualityError, InputError
from biometrics_core.schemas import DATABASE_SOURCE

from . import checks, day, profile, source

log = logging.getLogger(__name__)

main = stage_group("validate", "Validate stage of the BIOMETRICS ETL.")


def _count_database_rows(engine, run: StageRun) -> int:
    try:
        return source.database_rows(engine, run.day)
    finally:
        engine.dispose()


@stage_command(main, "readings", help="Check the loaded day: reconciliation with the source, dead-letter reasons, "
                                      "NULL keys, value ranges, daily metrics, readings on their day, uniqueness "
                                      "and volume. Exit 1 names failed checks.")
def readings(run: StageRun):
    min_ratio, max_ratio = settings.volume_bounds()
    # configuration and inputs first: a missing setting or manifest exits 2 before any query runs
    warehouse_url = settings.warehouse_url()
    extracted = source.extracted_rows(run.staging, run.day)
    source_engine = db.connect(settings.source_url(), "BIOMETRICS_DB_URL", "application database")
    engine = db.connect(warehouse_url, "BIOMETRICS_WAREHOUSE_URL", "warehouse")
    try:
        # the source count (a scan of the application database) runs while the warehouse is aggregated
        with ThreadPoolExecutor(max_workers=1) as pool:
            counting = pool.submit(_count_database_rows, source_engine, run)
            day.require_schema(engine)
            with day.snapshot(engine, run.day) as conn:
                if db.is_postgres(engine):
                    db.set_local_memory(conn, "work_mem", settings.get("BIOMETRICS_VALIDATE_WORK_MEM"),
                                        "BIOMETRICS_VALIDATE_WORK_MEM")
                facts = day.facts(conn, run.day)
                if not facts.loaded and not day.has_readings(conn, run.day):
                    raise InputError(f"nothing is loaded for {run.day} in the warehouse ({db.safe_url(engine.url)}): "
                                     f"run biometrics-load readings --date {run.day} first")
                # the clean rows of each source the extract knows are counted in the profile's scan;
                # a source it does not know (rows no stage should have written) takes a scan of its own
                day_profile = profile.day_profile(conn, run.day, sources=sorted({DATABASE_SOURCE, *extracted}))
                facts.clean_by_source = (day_profile.readings_by_source if day_profile.sources_complete
                                         else day.clean_by_source(conn, run.day))
                source_rows = source.source_rows(counting.result(), extracted)
                ctx = checks.Context(run.day, facts, source_rows, extracted, min_ratio, max_ratio, day_profile)
                results = checks.run_all(conn, ctx)
        failed = [r.name for r in results if not r.passed]
        manifest = run.manifest
        manifest.rows_in = sum(source_rows.values())
        manifest.rows_out = facts.clean
        for reason, count in sorted(facts.rejected_by_reason.items()):
            manifest.reject(reason, count)
        manifest.details = {"checks": [r.to_dict() for r in results], "failed_checks": failed,
                            "source_rows": source_rows, "warehouse": db.safe_url(engine.url)}
        message = f"data-quality check(s) failed: {', '.join(failed)}"
        if failed:  # the etl_runs row must say so too (the CLI would only mark it after recording)
            manifest.status = "failed"
            manifest.details["error"] = message
        log.info("validated %s: %d of %d checks passed", run.day, len(results) - len(failed), len(results))
        run.finish()
        runlog.record_run(engine, manifest)
    finally:
        engine.dispose()
    if failed:
        raise DataQualityError(message)
    return manifest
