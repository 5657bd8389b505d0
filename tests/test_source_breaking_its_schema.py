"""A source that breaks its own schema (NULL keys that `raw_biometric_data` declares NOT NULL) still
loads its day: such records are dead letters, and every record of the day is accounted for. A SQLite
source written by other hands than SQLAlchemy's (its own time text) has its days picked right."""

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
        # a NULL time: the extract had failed on it (exit 2), where PostgreSQL's gave a dead letter
        conn.execute("UPDATE raw_biometric_data SET ingested_at = NULL WHERE reading_id = 3")
    conn.close()
    warehouse = f"sqlite:///{tmp_path / 'wh.db'}"
    manifests = run_daily_job(DAY, str(tmp_path / "staging"),
                              {"BIOMETRICS_DB_URL": url, "BIOMETRICS_WAREHOUSE_URL": warehouse})
    assert manifests["transform"]["rows_rejected"]["missing_key"] == 3
    records = source_records(url, DAY, {})
    reference = assert_warehouse_matches(warehouse, DAY, records)
    assert reference.reject_counts()["missing_key"] == 3


def test_sqlite_times_without_fraction_are_on_their_day(tmp_path):
    """SQLite's own CURRENT_TIMESTAMP form, `YYYY-MM-DD HH:MM:SS`, compared as text: a bound of
    `D 00:00:00.000000` put `D 00:00:00` before the day, so that reading was on neither day."""
    source = tmp_path / "app.db"
    url = sample.write_sqlite_source_without_constraints(source, sample.generate_day(DAY, users=1, readings_per_user=1)
                                                         .database.slice(0, 0))
    times = {1: "2026-01-05 00:00:00", 2: "2026-01-05 12:00:00", 3: "2026-01-06 00:00:00", 4: "2026-01-06 12:00:00",
             5: "2026-01-05T23:59:59.999999", 6: "2026-01-04 23:59:59.999999"}
    with sqlite3.connect(source) as conn:
        conn.executemany("INSERT INTO raw_biometric_data VALUES (?, 7, 'd1', 'heart_rate', 70.0, 'bpm', ?, ?)",
                         [(i, t, t) for i, t in times.items()])
    conn.close()
    warehouse = f"sqlite:///{tmp_path / 'wh.db'}"
    loaded = {}
    for day in (DAY, DAY + dt.timedelta(days=1)):
        manifests = run_daily_job(day, str(tmp_path / "staging" / day.isoformat()),
                                  {"BIOMETRICS_DB_URL": url, "BIOMETRICS_WAREHOUSE_URL": warehouse})
        # (validate exited 0, run_daily_job checks it: it counted the source's day the same way)
        assert manifests["transform"]["rows_rejected"] == {}
        with sqlite3.connect(tmp_path / "wh.db") as conn:
            loaded[day] = sorted(r for (r,) in conn.execute(
                "SELECT reading_id FROM biometric_readings WHERE date = ?", (day.isoformat(),)))
        conn.close()
    assert loaded == {DAY: [1, 2, 5], DAY + dt.timedelta(days=1): [3, 4]}


def _reading(reading_id: int, created_at: str, value: float = 70.0) -> tuple:
    return (reading_id, 7, "d1", "heart_rate", value, "bpm", created_at, created_at)


# rows that share a reading_id where the source has no key on it: two different readings (both
# conflicting_reading_id), the same reading twice (one is a duplicate), and a broken record beside a
# good one (out_of_range; the good one loads: only records that pass the rules are in conflict)
_SHARED_IDS = [
    _reading(9_000_001, "2026-01-05 08:00:00"), _reading(9_000_001, "2026-01-05 09:00:00"),
    _reading(9_000_002, "2026-01-05 10:00:00"), _reading(9_000_002, "2026-01-05 10:00:00"),
    _reading(9_000_003, "2026-01-05 11:00:00", value=900.0), _reading(9_000_003, "2026-01-05 12:00:00"),
]


def test_a_source_without_a_key_on_its_ids_has_them_checked_and_its_day_loads(tmp_path):
    """Two readings under one reading_id in a source without its primary key: the warehouse's key
    (reading_id, source, date) refused the whole day at the load, on every retry."""
    source = tmp_path / "app.db"
    url = sample.write_sqlite_source_without_constraints(
        source, sample.generate_day(DAY, users=30, readings_per_user=10).database, primary_key=False)
    with sqlite3.connect(source) as conn:
        conn.executemany("INSERT INTO raw_biometric_data VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _SHARED_IDS)
    conn.close()
    warehouse = f"sqlite:///{tmp_path / 'wh.db'}"
    manifests = run_daily_job(DAY, str(tmp_path / "staging"),
                              {"BIOMETRICS_DB_URL": url, "BIOMETRICS_WAREHOUSE_URL": warehouse})
    assert manifests["extract"]["details"]["database_ids_unique"] is False
    rejected = manifests["transform"]["rows_rejected"]
    assert rejected["conflicting_reading_id"] == 2
    reference = assert_warehouse_matches(warehouse, DAY, source_records(url, DAY, {}))
    assert reference.rejected[("database", 9_000_001), "conflicting_reading_id"] == 2
    assert reference.rejected[("database", 9_000_002), "duplicate"] == 1
    assert reference.rejected[("database", 9_000_003), "out_of_range"] == 1
    assert ("database", 9_000_003) in reference.clean
    with sqlite3.connect(tmp_path / "wh.db") as conn:
        (detail,) = conn.execute("SELECT detail FROM etl_dead_letters WHERE source_record_id = '9000001' "
                                 "LIMIT 1").fetchone()
    conn.close()
    assert detail.startswith("reading_id 9000001 of database names 2 records of the day")
