"""``biometrics-extract``: stage the day's source records as Parquet under ``extract/readings``."""

from __future__ import annotations

import logging

import pyarrow.parquet as pq

from biometrics_core import db, settings
from biometrics_core.cli import StageRun, stage_command, stage_group
from biometrics_core.errors import ConfigError
from biometrics_core.manifest import refuse_another_days_staging
from biometrics_core.schemas import DATABASE_SOURCE, EXTRACT_READINGS
from biometrics_core.source import SOURCE_TABLE, check_source
from biometrics_core.staging import Staging

from . import database, vendor

log = logging.getLogger(__name__)

main = stage_group("extract", "Extract stage of the BIOMETRICS ETL.")


def _inbox(run: StageRun) -> Staging:
    """The vendors' inbox. The default one may not exist yet (no vendor has delivered); a configured
    one must be a folder that exists, or a prefix of a bucket that does: a mistyped path would
    otherwise read as a day without deliveries."""
    configured = (settings.get("BIOMETRICS_INBOX_PATH") or "").strip()
    if not configured:
        return run.staging.child("inbox")
    inbox = Staging(configured, "BIOMETRICS_INBOX_PATH")
    if not inbox.container_exists():
        raise ConfigError(f"BIOMETRICS_INBOX_PATH={inbox.uri()}: the {inbox.container} does not exist; create it "
                          "(empty is fine) or unset it for <staging path>/inbox")
    return inbox


@stage_command(main, "readings", help="Stage the day's readings: application database plus vendor files.")
def readings(run: StageRun):
    batch_size = settings.batch_size()
    refuse_another_days_staging(run.staging, run.day)
    engine = db.connect(settings.source_url(), "BIOMETRICS_DB_URL", "application database")
    # the source table and the vendor files are checked before anything is written: a missing table
    # or a malformed file stops the run with nothing staged
    check_source(engine)
    ids_unique = database.ids_are_unique(engine)
    if not ids_unique:
        log.warning("no key of %s makes every reading_id the extract reads unique: the transform checks the "
                    "database's ids too (a conflicting id is a dead letter)", SOURCE_TABLE)
    vendor_files = vendor.read_inbox(_inbox(run), run.day)
    counts: dict[str, int] = {}
    with run.staging.workdir() as work:
        out = work / "readings"
        out.mkdir()
        counts[DATABASE_SOURCE] = database.stage_day(engine, run.day, batch_size, out,
                                                     settings.get_int("BIOMETRICS_EXTRACT_CONNECTIONS"))
        for index, vf in enumerate(vendor_files):
            pq.write_table(vf.table, out / f"part-vendor-{vf.vendor}-{index:04d}.parquet", **database.WRITE_OPTIONS)
            counts[vf.vendor] = counts.get(vf.vendor, 0) + vf.table.num_rows
        run.publish({EXTRACT_READINGS: out})
    engine.dispose()
    total = sum(counts.values())
    run.manifest.rows_in = run.manifest.rows_out = total
    run.manifest.outputs = [run.staging.uri(EXTRACT_READINGS)]
    run.manifest.details = {"rows_by_source": counts, "vendor_files": [vf.uri for vf in vendor_files],
                            "database_ids_unique": ids_unique}
    log.info("extracted %d rows (%s)", total, ", ".join(f"{k}={v}" for k, v in counts.items()))
    return run.manifest
