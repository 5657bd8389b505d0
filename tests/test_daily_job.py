"""The whole daily job against a real PostgreSQL server (source and warehouse) and a real S3
endpoint, compared with an independent computation from the source rows."""

from __future__ import annotations

import datetime as dt
import math
import os
import signal
import subprocess

import pytest
import sqlalchemy as sa

from biometrics_testkit import expected, sample
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
    # a vendor record from another day: it must end in the dead-letter queue, not vanish
    generated.vendors["acme"] = _with_stray_record(generated.vendors["acme"])
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


def _with_stray_record(table):
    import pyarrow as pa
    row = table.slice(0, 1).to_pylist()[0]
    row.update(reading_id=999_999, created_at=dt.datetime(2026, 1, 4, 23, 0, tzinfo=dt.timezone.utc))
    return pa.concat_tables([table, pa.Table.from_pylist([row], schema=table.schema)])


def _source_records(job) -> list[dict]:
    """The day's source rows read back from PostgreSQL with plain SQL, plus the vendor rows."""
    engine = sa.create_engine(job["source_url"])
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT * FROM raw_biometric_data WHERE created_at >= '2026-01-05T00:00:00+00' "
            "AND created_at < '2026-01-06T00:00:00+00'")).mappings().all()
    engine.dispose()
    records = [{**r, "source": "database"} for r in rows]
    for vendor, table in job["generated"].vendors.items():
        records += [{**r, "source": vendor} for r in table.to_pylist()]
    return records


def test_warehouse_matches_an_independent_computation(job):
    reference = expected.compute(DAY, _source_records(job))
    engine = sa.create_engine(job["warehouse_url"])
    with engine.connect() as conn:
        metrics = {(r.user_id, r.metric_type): r for r in conn.execute(sa.text(
            "SELECT * FROM daily_metrics WHERE date = :d"), {"d": DAY})}
        clean = {(r.source, r.reading_id): r for r in conn.execute(sa.text(
            "SELECT * FROM biometric_readings WHERE date = :d"), {"d": DAY})}
        dead = {(r.source, int(r.source_record_id)): r.reason for r in conn.execute(sa.text(
            "SELECT source, source_record_id, reason FROM etl_dead_letters WHERE date = :d"), {"d": DAY})}
        runs = conn.execute(sa.text("SELECT stage, rows_in, rows_out FROM etl_runs WHERE date = :d"),
                            {"d": DAY}).all()
    engine.dispose()

    assert set(metrics) == set(reference.daily_metrics)
    for key, (avg, low, high, total, count) in reference.daily_metrics.items():
        row = metrics[key]
        assert row.sample_count == count
        assert math.isclose(row.value, avg, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(row.min_value, low, rel_tol=1e-12) and math.isclose(row.max_value, high, rel_tol=1e-12)
        assert math.isclose(row.sum_value, total, rel_tol=1e-9)
    assert set(clean) == set(reference.clean)
    for key, ref in reference.clean.items():
        assert clean[key].unit == ref["unit"]
        assert math.isclose(clean[key].value, ref["value"], rel_tol=1e-12, abs_tol=1e-12)
    assert dead == reference.rejected
    # nothing lost: every source record of the day is in exactly one of the two places
    assert len(clean) + len(dead) == len(_source_records(job))
    assert set(reference.reject_counts()) >= {"unknown_unit", "unknown_metric_type", "missing_value",
                                              "out_of_range", "duplicate", "outside_data_day"}
    assert {stage for stage, *_ in runs} >= {"extract", "transform", "load", "validate"}


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
