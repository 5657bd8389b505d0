"""Stages of one day running at once on PostgreSQL: validate while a reload of the day commits."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time

import pytest
import sqlalchemy as sa

from biometrics_testkit import sample
from biometrics_testkit.harness import run_daily_job, run_stage, script

pytestmark = pytest.mark.postgres

DAY = dt.date(2026, 1, 5)


def _stage(stage: str, staging, env: dict) -> subprocess.Popen:
    return subprocess.Popen([script(f"biometrics-{stage}"), "readings", "--date", str(DAY), "--staging-path",
                             str(staging)], env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _waiting_for_locks(conn: sa.Connection, how_many: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).scalar()
        conn.rollback()  # the server keeps a transaction's view of pg_stat_activity
        if waiting >= how_many:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {how_many} sessions ended up waiting for a lock")


def test_validate_during_a_reload_sees_one_committed_day(postgres_server, tmp_path):
    """The reload's readings are written frozen: a validate whose snapshot was taken before the
    reload's commit saw the new readings beside the old daily metrics and dead letters, and failed
    reconciliation and daily_metrics_consistency on a correct day."""
    source_url = postgres_server.create_database("concurrent_src")
    warehouse_url = postgres_server.create_database("concurrent_wh")
    sample.write_source(source_url, sample.generate_day(DAY, users=200, readings_per_user=20).database)
    env = {"BIOMETRICS_DB_URL": source_url, "BIOMETRICS_WAREHOUSE_URL": warehouse_url}
    staging = tmp_path / "staging"
    run_daily_job(DAY, str(staging), env)
    source = sa.create_engine(source_url)
    with source.begin() as conn:  # the day changes at the source and is staged again
        conn.execute(sa.text("DELETE FROM raw_biometric_data WHERE reading_id % 50 = 0"))
    source.dispose()
    for stage in ("extract", "transform"):
        run_stage(stage, "readings", "--date", str(DAY), "--staging-path", str(staging), env=env)
    warehouse = sa.create_engine(warehouse_url)
    with warehouse.connect() as watcher, warehouse.connect() as reader:
        reader.execute(sa.text("SELECT 1 FROM biometric_readings LIMIT 1"))  # holds the swap off: a reader
        load = _stage("load", staging, env)
        _waiting_for_locks(watcher, 1)  # the load, at its DETACH, behind the reader
        validate = _stage("validate", staging, env)
        _waiting_for_locks(watcher, 2)  # validate too, before it has read anything of the day
        reader.rollback()
        load_out, load_err = load.communicate(timeout=300)
        validate_out, validate_err = validate.communicate(timeout=300)
    warehouse.dispose()
    assert load.returncode == 0, load_err
    assert validate.returncode == 0, validate_err
