"""A source that breaks its own schema (NULL keys that `raw_biometric_data` declares NOT NULL) still
loads its day: such records are dead letters, and every record of the day is accounted for."""

from __future__ import annotations

import datetime as dt
import sqlite3

from biometrics_testkit import sample
from biometrics_testkit.compare import assert_warehouse_matches, source_records
from biometrics_testkit.harness import run_daily_job

DAY = dt.date(2026, 1, 5)


def test_records_without_keys_become_dead_letters(tmp_path):
    source = tmp_path / "app.db"
    url = sample.write_sqlite_source_without_constraints(
        source, sample.generate_day(DAY, users=30, readings_per_user=10).database)
    with sqlite3.connect(source) as conn:
        conn.execute("UPDATE raw_biometric_data SET user_id = NULL WHERE reading_id = 1")
        conn.execute("UPDATE raw_biometric_data SET device_id = NULL WHERE reading_id = 2")
    conn.close()
    warehouse = f"sqlite:///{tmp_path / 'wh.db'}"
    manifests = run_daily_job(DAY, str(tmp_path / "staging"),
                              {"BIOMETRICS_DB_URL": url, "BIOMETRICS_WAREHOUSE_URL": warehouse})
    assert manifests["transform"]["rows_rejected"]["missing_key"] == 2
    records = source_records(url, DAY, {})
    reference = assert_warehouse_matches(warehouse, DAY, records)
    assert reference.reject_counts()["missing_key"] == 2
