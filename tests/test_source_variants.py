"""Application databases that are not shaped like the default: the day is still the UTC day for
every stage, and every record of it is accounted for."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from biometrics_testkit import sample
from biometrics_testkit.harness import run_daily_job

pytestmark = pytest.mark.postgres

DAY = dt.date(2026, 3, 10)


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata"])
def test_times_without_a_time_zone_are_utc_for_every_stage(postgres_server, tmp_path, zone):
    """`timestamp` columns on a database whose TimeZone is not UTC: the extract took them as UTC and
    validate in the session's zone, so validate counted another day and failed a correct load."""
    name = zone.split("/")[1].lower()
    source_url = postgres_server.create_database(f"naive_src_{name}")
    warehouse_url = postgres_server.create_database(f"naive_wh_{name}")
    generated = sample.generate_day(DAY, users=60, readings_per_user=10)
    sample.write_source(source_url, generated.database)
    engine = sa.create_engine(source_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("ALTER TABLE raw_biometric_data "
                             "ALTER created_at TYPE timestamp USING created_at AT TIME ZONE 'UTC', "
                             "ALTER ingested_at TYPE timestamp USING ingested_at AT TIME ZONE 'UTC'"))
        conn.execute(sa.text(f"ALTER DATABASE naive_src_{name} SET timezone = '{zone}'"))
        on_day = conn.execute(sa.text("SELECT count(*) FROM raw_biometric_data WHERE created_at >= :a "
                                      "AND created_at < :b"), {"a": DAY.isoformat(),
                                                                "b": (DAY + dt.timedelta(days=1)).isoformat()}).scalar()
    engine.dispose()
    manifests = run_daily_job(DAY, str(tmp_path / "staging"),
                              {"BIOMETRICS_DB_URL": source_url, "BIOMETRICS_WAREHOUSE_URL": warehouse_url})
    # (run_daily_job checked that validate passed: it counted the day the extract staged)
    assert manifests["extract"]["details"]["rows_by_source"]["database"] == on_day


def test_a_warehouse_that_ends_idle_transactions_quickly(postgres_server, tmp_path):
    """idle_in_transaction_session_timeout on the warehouse: the load's day transaction waits, idle,
    while the readings are copied and indexed on other connections, and the backup's snapshot while
    pg_dump reads it; the server ended both ('server closed the connection'), on every try."""
    from biometrics_testkit.harness import run_stage
    source_url = postgres_server.create_database("idle_src")
    warehouse_url = postgres_server.create_database("idle_wh")
    sample.write_source(source_url, sample.generate_day(DAY, users=300, readings_per_user=30).database)
    engine = sa.create_engine(warehouse_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("ALTER DATABASE idle_wh SET idle_in_transaction_session_timeout = '20ms'"))
    engine.dispose()
    env = {"BIOMETRICS_DB_URL": source_url, "BIOMETRICS_WAREHOUSE_URL": warehouse_url}
    run_daily_job(DAY, str(tmp_path / "staging"), env)
    run_stage("backup", "create", "--date", str(DAY), "--staging-path", str(tmp_path / "staging"), env=env)


def test_a_device_id_too_long_for_the_natural_key_is_a_dead_letter_and_the_day_loads(postgres_server, tmp_path):
    """A random device_id of 2.7 kB (random: PostgreSQL compresses a repetitive one under the B-tree's
    2704-byte limit) had passed the transform, and the load refused the whole day on every retry."""
    import random
    import string

    from biometrics_testkit.compare import assert_warehouse_matches, source_records
    source_url = postgres_server.create_database("long_device_src")
    warehouse_url = postgres_server.create_database("long_device_wh")
    sample.write_source(source_url, sample.generate_day(DAY, users=40, readings_per_user=10).database)
    rng = random.Random(7)
    noise = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(2700))
    engine = sa.create_engine(source_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO raw_biometric_data VALUES (900000001, 7, :device, 'heart_rate', 70, 'bpm', "
                             ":at, :at)"), {"device": noise, "at": dt.datetime(2026, 3, 10, 12, tzinfo=dt.timezone.utc)})
    engine.dispose()
    manifests = run_daily_job(DAY, str(tmp_path / "staging"),
                              {"BIOMETRICS_DB_URL": source_url, "BIOMETRICS_WAREHOUSE_URL": warehouse_url})
    assert manifests["transform"]["rows_rejected"]["device_id_too_long"] == 1
    assert_warehouse_matches(warehouse_url, DAY, source_records(source_url, DAY, {}))


def test_a_postgres_source_without_its_primary_key_has_its_ids_checked(postgres_server, tmp_path):
    """The application's table copied without its primary key (a replica, a view's table), holding
    two readings under one reading_id: the load refused the whole day on the warehouse's key."""
    from biometrics_testkit.compare import assert_warehouse_matches, source_records
    source_url = postgres_server.create_database("unkeyed_src")
    warehouse_url = postgres_server.create_database("unkeyed_wh")
    sample.write_source(source_url, sample.generate_day(DAY, users=60, readings_per_user=10).database)
    engine = sa.create_engine(source_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE raw_biometric_data DROP CONSTRAINT raw_biometric_data_pkey"))
        shared = conn.execute(sa.text("SELECT reading_id FROM raw_biometric_data WHERE metric_type = 'heart_rate' "
                                      "AND value BETWEEN 50 AND 100 ORDER BY reading_id LIMIT 1")).scalar()
        conn.execute(sa.text("INSERT INTO raw_biometric_data SELECT reading_id, user_id, device_id || '-other', "
                             "metric_type, value, unit, created_at, ingested_at FROM raw_biometric_data "
                             "WHERE reading_id = :id"), {"id": shared})
    engine.dispose()
    manifests = run_daily_job(DAY, str(tmp_path / "staging"),
                              {"BIOMETRICS_DB_URL": source_url, "BIOMETRICS_WAREHOUSE_URL": warehouse_url})
    assert manifests["transform"]["rows_rejected"]["conflicting_reading_id"] == 2
    reference = assert_warehouse_matches(warehouse_url, DAY, source_records(source_url, DAY, {}))
    assert reference.rejected[("database", shared), "conflicting_reading_id"] == 2
