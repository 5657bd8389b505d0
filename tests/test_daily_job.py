"""The whole daily job against a real PostgreSQL server (source and warehouse) and a real S3
endpoint, compared with an independent computation from the source rows."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess

import pytest
import sqlalchemy as sa

from biometrics_testkit import sample
from biometrics_testkit.compare import assert_warehouse_matches, source_records
from biometrics_testkit.harness import run_daily_job, run_stage, script, snapshot

pytestmark = [pytest.mark.postgres, pytest.mark.s3]

DAY = dt.date(2026, 1, 5)
BUCKET = "biometrics-etl"


@pytest.fixture(scope="module")
def job(postgres_server, s3_endpoint, tmp_path_factory):
    source_url = postgres_server.create_database("daily_src")
    warehouse_url = postgres_server.create_database("daily_wh")
    s3_endpoint.create_bucket(BUCKET)
    generated = sample.generate_day(DAY, users=400, readings_per_user=30, vendor_rows=300)
    sample.write_source(source_url, generated.database)
    prefix = f"staging/biometric_daily_etl/{DAY}"
    inbox = tmp_path_factory.mktemp("inbox")
    s3 = s3_endpoint.client()
    for path in sample.write_vendor_files(inbox, DAY, generated.vendors):
        s3.upload_file(str(path), BUCKET, f"{prefix}/inbox/{path.relative_to(inbox).as_posix()}")
    env = {"BIOMETRICS_DB_URL": source_url, "BIOMETRICS_WAREHOUSE_URL": warehouse_url, **s3_endpoint.env(),
           "BIOMETRICS_BATCH_SIZE": "2000"}
    manifests = run_daily_job(DAY, f"s3://{BUCKET}/{prefix}", env)
    return {"env": env, "staging": f"s3://{BUCKET}/{prefix}", "manifests": manifests, "generated": generated,
            "source_url": source_url, "warehouse_url": warehouse_url}


def test_warehouse_matches_an_independent_computation(job):
    records = source_records(job["source_url"], DAY, job["generated"].vendors)
    reference = assert_warehouse_matches(job["warehouse_url"], DAY, records)
    assert set(reference.reject_counts()) >= {"unknown_unit", "unknown_metric_type", "missing_value", "out_of_range",
                                              "conflicting_reading_id", "duplicate", "outside_data_day"}
    engine = sa.create_engine(job["warehouse_url"])
    with engine.connect() as conn:
        stages = conn.execute(sa.text("SELECT DISTINCT stage FROM etl_runs WHERE date = :d"), {"d": DAY}).scalars()
        assert set(stages) >= {"extract", "transform", "load", "validate"}
    engine.dispose()


def test_manifests_tell_what_happened(job):
    m = job["manifests"]
    assert m["extract"]["rows_out"] == m["transform"]["rows_in"]
    assert m["transform"]["rows_out"] + m["transform"]["rows_rejected_total"] == m["transform"]["rows_in"]
    assert m["load"]["rows_out"] == m["transform"]["rows_out"]
    checks = m["validate"]["details"]["checks"]
    assert checks and all(c["passed"] for c in checks), checks
    assert {c["name"] for c in checks} >= {"reconciliation", "uniqueness", "volume"}
    assert m["transform"]["outputs"][0].startswith("s3://")


def test_rerun_of_the_same_date_leaves_identical_contents(job):
    before = snapshot(job["warehouse_url"], DAY)
    run_daily_job(DAY, job["staging"], job["env"])
    assert snapshot(job["warehouse_url"], DAY) == before


def test_a_load_killed_mid_way_leaves_the_day_intact_and_a_rerun_fixes_it(job):
    before = snapshot(job["warehouse_url"], DAY)
    argv = [script("biometrics-load"), "readings", "--date", DAY.isoformat(), "--staging-path", job["staging"],
            "--log-level", "DEBUG"]
    proc = subprocess.Popen(argv, env={**os.environ, **job["env"], "BIOMETRICS_BATCH_SIZE": "500"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # kill it once the day's transaction is under way
        if "copying readings" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    engine = sa.create_engine(job["warehouse_url"])
    with engine.connect() as conn:
        leftovers = conn.execute(sa.text(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE 'biometric_readings_p20260105_%'")).scalars().all()
    engine.dispose()
    assert leftovers == []
    assert snapshot(job["warehouse_url"], DAY) == before
    run_stage("load", "readings", "--date", DAY.isoformat(), "--staging-path", job["staging"], env=job["env"])
    run_stage("validate", "readings", "--date", DAY.isoformat(), "--staging-path", job["staging"], env=job["env"])
    assert snapshot(job["warehouse_url"], DAY) == before
