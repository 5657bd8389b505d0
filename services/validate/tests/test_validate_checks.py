"""Each check fails, exit 1, named on stderr and in the manifest, when the warehouse is tampered with."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from biometrics_testkit.sample import source_metadata
from biometrics_validate import checks, profile
from biometrics_validate.day import DayFacts

DAY = dt.date(2026, 1, 5)  # the day conftest's pipeline loads

COLUMNS = "date, source, reading_id, user_id, device_id, metric_type, value, unit, created_at, ingested_at"
FIRST = ("(SELECT min(reading_id) FROM biometric_readings WHERE date = :d AND source = 'database' "
         "AND metric_type = '{metric}')")


def assert_fails(outcome, *names: str, only: bool = False) -> None:
    assert outcome.exit_code == 1, outcome.stderr
    assert outcome.manifest["status"] == "failed"
    for name in names:
        assert name in outcome.failed
        assert name in outcome.error_line
    if only:
        assert outcome.failed == list(names)
        assert outcome.error_line.endswith(f"data-quality check(s) failed: {', '.join(names)}")


# -- reconciliation --------------------------------------------------------------------------------
def test_deleted_reading_fails_reconciliation(loaded):
    assert loaded.execute("DELETE FROM biometric_readings WHERE date = :d AND source = 'database' "
                          f"AND reading_id = {FIRST.format(metric='heart_rate')}", d=DAY) == 1

    outcome = loaded.validate()

    assert_fails(outcome, "reconciliation")
    figures = outcome.checks["reconciliation"]["figures"]
    assert figures["difference"] == 1
    assert figures["by_source"]["database"]["difference"] == 1
    assert "database +1" in outcome.checks["reconciliation"]["detail"]
    # the failed run is recorded as failed
    assert loaded.scalar("SELECT status FROM etl_runs WHERE stage = 'validate' AND date = :d", d=DAY) == "failed"


def test_deleted_dead_letter_fails_reconciliation_alone(loaded):
    dead_letter = loaded.scalar("SELECT min(id) FROM etl_dead_letters WHERE date = :d AND source = 'acme'", d=DAY)
    loaded.execute("DELETE FROM etl_dead_letters WHERE id = :id", id=dead_letter)

    outcome = loaded.validate()

    assert_fails(outcome, "reconciliation", only=True)
    assert outcome.checks["reconciliation"]["figures"]["by_source"]["acme"]["difference"] == 1


def test_source_row_arriving_after_extract_fails_reconciliation(loaded):
    # the source is counted again, not taken from the extract's word
    source = sa.create_engine(loaded.env["BIOMETRICS_DB_URL"])
    late = {"reading_id": 987_654_321, "user_id": 1, "device_id": "dev-late", "metric_type": "heart_rate",
            "value": 70.0, "unit": "bpm", "created_at": dt.datetime(2026, 1, 5, 12, tzinfo=dt.timezone.utc),
            "ingested_at": dt.datetime(2026, 1, 6, 1, tzinfo=dt.timezone.utc)}
    _meta, table = source_metadata()
    with source.begin() as conn:
        conn.execute(table.insert(), [late])
    try:
        outcome = loaded.validate()
    finally:  # the PostgreSQL source is shared by the tests
        with source.begin() as conn:
            conn.execute(table.delete().where(table.c.reading_id == late["reading_id"]))
        source.dispose()

    assert_fails(outcome, "reconciliation", only=True)
    database = outcome.checks["reconciliation"]["figures"]["by_source"]["database"]
    assert database["difference"] == 1
    assert database["source"] == database["extracted"] + 1  # it arrived after the extract


def test_readings_of_a_source_the_extract_never_staged_fail_reconciliation(loaded):
    # the day's profile counts the sources the extract knows; any other one is found by a scan of its own
    as_ghost = COLUMNS.replace("source", "'ghost'", 1).replace("device_id", "device_id || '-g'")  # a new natural key
    loaded.execute(f"INSERT INTO biometric_readings ({COLUMNS}) SELECT {as_ghost} "
                   f"FROM biometric_readings WHERE date = :d AND source = 'database' "
                   f"AND reading_id = {FIRST.format(metric='heart_rate')}", d=DAY)

    outcome = loaded.validate()

    assert_fails(outcome, "reconciliation")
    ghost = outcome.checks["reconciliation"]["figures"]["by_source"]["ghost"]
    assert (ghost["source"], ghost["clean"], ghost["difference"]) == (0, 1, -1)
    assert "ghost -1" in outcome.checks["reconciliation"]["detail"]


# -- values in range -------------------------------------------------------------------------------
def test_value_out_of_range_fails_values_in_range(loaded):
    loaded.execute("UPDATE biometric_readings SET value = 9999 WHERE date = :d AND source = 'database' "
                   f"AND reading_id = {FIRST.format(metric='heart_rate')}", d=DAY)

    outcome = loaded.validate()

    # the group's max no longer matches its daily metric either
    assert_fails(outcome, "values_in_range", "daily_metrics_consistency")
    figures = outcome.checks["values_in_range"]["figures"]
    assert figures["out_of_range"] == 1
    assert figures["by_metric"] == {"heart_rate": {"out_of_range": 1}}


def test_non_canonical_unit_fails_values_in_range_alone(loaded):
    loaded.execute("UPDATE biometric_readings SET unit = 'fahrenheit' WHERE date = :d AND source = 'database' "
                   f"AND reading_id = {FIRST.format(metric='skin_temperature')}", d=DAY)

    outcome = loaded.validate()

    assert_fails(outcome, "values_in_range", only=True)
    assert outcome.checks["values_in_range"]["figures"]["non_canonical_unit"] == 1


@pytest.mark.parametrize("loaded", ["postgresql"], indirect=True)  # SQLite stores NaN as NULL, refused there
def test_nan_value_fails_values_in_range(loaded):
    loaded.execute("UPDATE biometric_readings SET value = 'NaN' WHERE date = :d AND source = 'database' "
                   f"AND reading_id = {FIRST.format(metric='spo2')}", d=DAY)

    outcome = loaded.validate()

    assert_fails(outcome, "values_in_range", "daily_metrics_consistency")
    assert outcome.checks["values_in_range"]["figures"]["by_metric"] == {"spo2": {"out_of_range": 1}}


def test_a_clean_day_is_judged_from_one_aggregate_of_the_readings(loaded):
    outcome = loaded.validate()

    figures = outcome.checks["values_in_range"]["figures"]
    clean = outcome.checks["reconciliation"]["figures"]["clean_rows"]
    assert figures["readings"] == clean
    assert outcome.checks["daily_metrics_consistency"]["figures"]["reading_groups"] > 0
    # the shared aggregate ran once, and no per-reading count followed it
    assert outcome.stderr.count("aggregated the day's readings") == 1


# -- daily metrics ---------------------------------------------------------------------------------
FIRST_USER = "(SELECT min(user_id) FROM daily_metrics WHERE date = :d AND metric_type = 'heart_rate')"


def test_broken_daily_metrics_avg_fails_consistency_alone(loaded):
    loaded.execute(f"UPDATE daily_metrics SET value = value * 1.001 WHERE date = :d AND metric_type = 'heart_rate' "
                   f"AND user_id = {FIRST_USER}", d=DAY)

    outcome = loaded.validate()

    assert_fails(outcome, "daily_metrics_consistency", only=True)
    check = outcome.checks["daily_metrics_consistency"]
    assert check["figures"]["mismatched"] == {"sample_count": 0, "min_value": 0, "max_value": 0, "sum_value": 0,
                                              "avg_value": 1}
    # the group and what disagrees in it, never its figures (a user's health data, in XCom and etl_runs)
    (example,) = check["figures"]["examples"]
    user = loaded.scalar(f"SELECT {FIRST_USER}", d=DAY)
    assert example == {"user_id": user, "metric_type": "heart_rate", "differs": ["avg_value"]}


def test_avg_rounding_within_tolerance_passes(loaded):
    loaded.execute(f"UPDATE daily_metrics SET value = value * (1 + 1e-12) WHERE date = :d "
                   f"AND metric_type = 'heart_rate' AND user_id = {FIRST_USER}", d=DAY)

    assert loaded.validate().exit_code == 0


def test_a_clean_day_is_compared_by_bucket_not_group_by_group(loaded):
    outcome = loaded.validate()

    figures = outcome.checks["daily_metrics_consistency"]["figures"]
    assert (figures["compared"], figures["disagreeing_buckets"]) == ("by bucket", 0)
    assert 0 < figures["buckets"] <= figures["reading_groups"]
    assert "one by one" not in outcome.stderr


def test_a_reading_counted_for_another_user_of_its_bucket_fails_consistency(loaded, monkeypatch):
    # every user in one bucket: the two groups' changes cancel in the bucket's plain count and sum,
    # and only the user-weighted count and sum tell them apart
    monkeypatch.setattr(profile, "USER_BUCKETS", 1)
    users = [loaded.scalar("SELECT user_id FROM daily_metrics WHERE date = :d AND metric_type = 'steps' "
                           f"AND sample_count > 1 ORDER BY user_id LIMIT 1 OFFSET {i}", d=DAY) for i in (0, 1)]
    for user, step in zip(users, (1, -1)):
        loaded.execute("UPDATE daily_metrics SET sample_count = sample_count + :step, "
                       "sum_value = sum_value + :step * 64, value = (sum_value + :step * 64) / (sample_count + :step) "
                       "WHERE date = :d AND metric_type = 'steps' AND user_id = :user", d=DAY, user=user, step=step)

    outcome = loaded.validate()

    assert_fails(outcome, "daily_metrics_consistency", only=True)
    figures = outcome.checks["daily_metrics_consistency"]["figures"]
    assert (figures["compared"], figures["disagreeing_buckets"]) == ("group by group", 1)
    assert (figures["mismatched"]["sample_count"], figures["mismatched"]["sum_value"]) == (2, 2)
    assert sorted(e["user_id"] for e in figures["examples"]) == sorted(users)


def test_a_reading_moved_to_a_user_far_away_in_its_bucket_fails_consistency(loaded):
    """256 x 65521 apart, two users had the same bucket and the same weight: the move went unseen."""
    user = loaded.scalar("SELECT min(user_id) FROM daily_metrics WHERE date = :d AND metric_type = 'steps' "
                         "AND sample_count > 1", d=DAY)
    reading = loaded.scalar("SELECT min(reading_id) FROM biometric_readings WHERE date = :d AND metric_type = 'steps' "
                            "AND user_id = :user", d=DAY, user=user)
    assert loaded.execute("UPDATE biometric_readings SET user_id = user_id + 16773376 WHERE date = :d "
                          "AND metric_type = 'steps' AND user_id = :user AND reading_id = :reading",
                          d=DAY, user=user, reading=reading) == 1

    outcome = loaded.validate()

    assert_fails(outcome, "daily_metrics_consistency", only=True)
    assert outcome.checks["daily_metrics_consistency"]["figures"]["compared"] == "group by group"


def test_a_bucket_off_within_a_groups_rounding_is_judged_group_by_group_and_passes(loaded):
    # 1e-10 is within a group's tolerance but not its bucket's: the groups are compared one by one
    loaded.execute(f"UPDATE daily_metrics SET sum_value = sum_value * (1 + 1e-10) WHERE date = :d "
                   f"AND metric_type = 'heart_rate' AND user_id = {FIRST_USER}", d=DAY)

    outcome = loaded.validate()

    assert outcome.exit_code == 0, outcome.stderr
    figures = outcome.checks["daily_metrics_consistency"]["figures"]
    assert (figures["compared"], figures["disagreeing_buckets"]) == ("group by group", 1)
    assert figures["mismatched"] == dict.fromkeys(profile.MISMATCH_KINDS, 0)
    assert "one by one" in outcome.stderr


def test_missing_and_extra_daily_metrics_groups_fail_consistency(loaded):
    loaded.execute(f"UPDATE daily_metrics SET metric_type = 'heart_rate_typo' WHERE date = :d "
                   f"AND metric_type = 'heart_rate' AND user_id = {FIRST_USER}", d=DAY)

    outcome = loaded.validate()

    assert_fails(outcome, "daily_metrics_consistency", only=True)
    figures = outcome.checks["daily_metrics_consistency"]["figures"]
    assert (figures["missing_groups"], figures["extra_groups"]) == (1, 1)


# -- uniqueness ------------------------------------------------------------------------------------
def test_the_warehouse_refuses_a_duplicate_natural_key(loaded):
    # the natural key is a unique index: a second reading with the same key cannot even be loaded,
    # so validate may take the index as proof (the counting path is tested on a lax schema below)
    with pytest.raises(sa.exc.IntegrityError):
        loaded.execute(f"INSERT INTO biometric_readings ({COLUMNS}) "
                       f"SELECT date, source, reading_id + 900000000, user_id, device_id, metric_type, value, unit, "
                       f"created_at, ingested_at FROM biometric_readings WHERE date = :d AND source = 'database' "
                       f"AND reading_id = {FIRST.format(metric='steps')}", d=DAY)


# -- volume ----------------------------------------------------------------------------------------
def _history(loaded, every: int, days: int = 7, readings: bool = True) -> None:
    """Copy every ``every``-th clean reading of the day into each of the previous ``days`` days,
    with those days' daily metrics (without the readings themselves when ``readings`` is false)."""
    for back in range(1, days + 1):
        previous = DAY - dt.timedelta(days=back)
        loaded.add_partition(previous)
        picked = f"FROM biometric_readings WHERE date = :d AND reading_id % {every} = 0"
        if readings:
            loaded.execute(f"INSERT INTO biometric_readings ({COLUMNS}) SELECT :p, source, reading_id, user_id, "
                           f"device_id, metric_type, value, unit, created_at, ingested_at {picked}", p=previous, d=DAY)
        loaded.execute("INSERT INTO daily_metrics (date, user_id, metric_type, value, min_value, max_value, sum_value, "
                       "sample_count) SELECT :p, user_id, metric_type, avg(value), min(value), max(value), sum(value), "
                       f"count(*) {picked} GROUP BY user_id, metric_type", p=previous, d=DAY)


def test_volume_spike_against_trailing_days_fails(loaded):
    _history(loaded, every=3)  # the day has about three times its usual volume

    outcome = loaded.validate()

    assert_fails(outcome, "volume", only=True)
    figures = outcome.checks["volume"]["figures"]
    assert len(figures["history"]) == 7
    assert 2.5 < figures["ratio"] < 3.5
    assert "outside [0.5, 2.0]" in outcome.checks["volume"]["detail"]

    # the bounds are settings
    assert loaded.validate(env={"BIOMETRICS_VOLUME_MAX_RATIO": "4"}).exit_code == 0


def test_volume_counts_the_trailing_days_from_their_daily_metrics(loaded):
    # a week of readings is not read again every day: the trailing days' sample counts stand for them
    _history(loaded, every=3, days=2, readings=False)

    figures = loaded.validate().checks["volume"]["figures"]

    assert len(figures["history"]) == 2
    assert 2.5 < figures["ratio"] < 3.5


def test_volume_like_the_trailing_days_passes(loaded):
    _history(loaded, every=1, days=3)

    outcome = loaded.validate()

    assert outcome.exit_code == 0, outcome.stderr
    figures = outcome.checks["volume"]["figures"]
    assert (len(figures["history"]), figures["ratio"]) == (3, 1.0)


# -- without the warehouse's constraints: NULL keys and duplicated keys are found too -------------
def _lax_warehouse() -> sa.Engine:
    """The warehouse tables without NOT NULL or primary keys, which the real schema has."""
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE biometric_readings (date TEXT, source TEXT, reading_id INT, user_id INT, "
                             "device_id TEXT, metric_type TEXT, value REAL, unit TEXT, created_at TEXT)"))
        conn.execute(sa.text("CREATE TABLE daily_metrics (date TEXT, user_id INT, metric_type TEXT, value REAL, "
                             "min_value REAL, max_value REAL, sum_value REAL, sample_count INT)"))
        conn.execute(sa.text("CREATE TABLE etl_dead_letters (date TEXT, stage TEXT, source TEXT, reason TEXT)"))
    return engine


def _check_lax(check, *inserts: str) -> checks.CheckResult:
    """One check, called alone on the lax warehouse after the given INSERT statements, with what it
    needs from the run."""
    with _lax_warehouse().begin() as conn:
        for insert in inserts:
            conn.execute(sa.text(insert))
        return check(conn, checks.Context(DAY, DayFacts(), {}, {}, 0.5, 2.0))


def test_null_keys_are_found_and_named():
    result = _check_lax(checks.null_keys,
                        "INSERT INTO biometric_readings VALUES ('2026-01-05', 'database', 1, 7, NULL, 'heart_rate', 60, "
                        "'bpm', '2026-01-05 10:00:00'), (NULL, 'database', 2, 7, 'd', 'heart_rate', 60, 'bpm', "
                        "'2026-01-05 10:00:00')",
                        "INSERT INTO daily_metrics (date, user_id, metric_type) VALUES ('2026-01-05', NULL, 'heart_rate')")

    assert not result.passed
    bad = {k: n for k, n in result.figures["null_counts"].items() if n}
    assert bad == {"biometric_readings.device_id": 1, "biometric_readings.date": 1, "daily_metrics.user_id": 1}
    assert "biometric_readings.device_id (1 rows)" in result.detail


def test_out_of_catalogue_values_are_counted_one_by_one():
    result = _check_lax(checks.values_in_range,
                        "INSERT INTO biometric_readings VALUES "
                        "('2026-01-05', 'database', 1, 7, 'd', 'heart_rate', 60, 'bpm', '2026-01-05 10:00:00'), "
                        "('2026-01-05', 'database', 2, 7, 'd', 'heart_rate', 900, 'bpm', '2026-01-05 10:01:00'), "
                        "('2026-01-05', 'database', 3, 7, 'd', 'heart_rate', NULL, 'bpm', '2026-01-05 10:02:00'), "
                        "('2026-01-05', 'database', 4, 7, 'd', 'mood', 3, 'stars', '2026-01-05 10:03:00'), "
                        "('2026-01-05', 'database', 5, 8, 'd', 'spo2', 97, 'ratio', '2026-01-05 10:04:00')")

    assert not result.passed
    assert result.figures["by_metric"] == {"heart_rate": {"out_of_range": 2}, "mood": {"unknown_metric_type": 1},
                                           "spo2": {"non_canonical_unit": 1}}
    assert result.figures["readings"] == 5


def test_not_null_columns_prove_their_keys(loaded):
    outcome = loaded.validate()

    figures = outcome.checks["null_keys"]["figures"]
    assert {"biometric_readings.user_id", "biometric_readings.date", "daily_metrics.metric_type",
            "etl_dead_letters.reason"} <= set(figures["enforced_by_not_null"])
    assert not any(figures["null_counts"].values())


def test_duplicates_are_counted_where_no_primary_key_enforces_uniqueness():
    result = _check_lax(checks.uniqueness,
                        "INSERT INTO biometric_readings VALUES "
                        "('2026-01-05', 'acme', 1, 7, 'd1', 'heart_rate', 60, 'bpm', '2026-01-05 10:00:00'), "
                        "('2026-01-05', 'acme', 1, 7, 'd1', 'spo2', 97, 'percent', '2026-01-05 10:00:00'), "
                        "('2026-01-05', 'fitco', 1, 7, 'd2', 'spo2', 97, 'percent', '2026-01-05 10:00:00')",
                        "INSERT INTO daily_metrics (date, user_id, metric_type) "
                        "VALUES ('2026-01-05', 7, 'spo2'), ('2026-01-05', 7, 'spo2')")

    assert not result.passed
    figures = result.figures
    assert (figures["reading_id"]["duplicated_keys"], figures["reading_id"]["surplus_rows"]) == (1, 1)
    assert figures["reading_id"]["examples"] == [{"source": "acme", "reading_id": 1, "n": 2}]
    assert figures["natural_key"]["duplicated_keys"] == 0
    assert figures["daily_metrics_key"]["duplicated_keys"] == 1
    assert "enforced_by" not in figures["reading_id"]
    assert result.detail == ("1 duplicated (source, reading_id) in biometric_readings; "
                             "1 duplicated (user_id, metric_type) in daily_metrics")


def test_primary_keys_prove_their_uniqueness(loaded):
    outcome = loaded.validate()

    figures = outcome.checks["uniqueness"]["figures"]
    assert figures["reading_id"]["enforced_by"] == "primary key (reading_id, source, date)"
    assert figures["daily_metrics_key"]["enforced_by"] == "primary key (date, user_id, metric_type)"
    assert figures["natural_key"]["enforced_by"].startswith("unique index (created_at, user_id, device_id")


# -- dead letters' reasons -------------------------------------------------------------------------
def test_a_dead_letter_with_a_reason_no_rule_gives_fails(loaded):
    letter = loaded.scalar("SELECT min(id) FROM etl_dead_letters WHERE date = :d AND reason = 'out_of_range'", d=DAY)
    loaded.execute("UPDATE etl_dead_letters SET reason = 'no_such_reason' WHERE id = :id", id=letter)

    outcome = loaded.validate()

    assert_fails(outcome, "dead_letter_reasons", only=True)
    assert "'no_such_reason' (1)" in outcome.checks["dead_letter_reasons"]["detail"]


# -- readings on their day -------------------------------------------------------------------------
@pytest.mark.parametrize("moved", [dt.datetime(2026, 2, 17, 10, 0), dt.datetime(2026, 1, 4, 23, 59, 59, 999999)])
def test_a_reading_whose_time_is_not_on_its_day_fails(loaded, moved):
    reading = loaded.scalar("SELECT min(reading_id) FROM biometric_readings WHERE date = :d AND source = 'database'",
                            d=DAY)
    value = moved.replace(tzinfo=dt.timezone.utc) if loaded.backend == "postgresql" else f"{moved:%Y-%m-%d %H:%M:%S.%f}"
    loaded.execute("UPDATE biometric_readings SET created_at = :t WHERE date = :d AND source = 'database' "
                   "AND reading_id = :r", t=value, d=DAY, r=reading)

    outcome = loaded.validate()

    assert_fails(outcome, "readings_on_their_day", only=True)
    where = "after" if moved.date() > DAY else "before"
    assert f"1 {where} {DAY}" in outcome.checks["readings_on_their_day"]["detail"]


@pytest.mark.postgres
def test_tiny_values_compare_without_a_floating_point_underflow(postgres_server):
    """PostgreSQL raises for a product of non-zero floats that rounds to zero, and for a quotient."""
    engine = sa.create_engine(postgres_server.admin_url)
    number = "CAST('{}' AS DOUBLE PRECISION)".format
    with engine.connect() as conn:
        for a, b in (("1e-320", "1e-320"), ("1e-320", "0"), ("0", "0"), ("1e-320", "2e-320")):
            close = profile._close(number(a), number(b))
            assert conn.execute(sa.text(f"SELECT {close}")).scalar() is True, (a, b)
        # the mean of denormal readings: their sum divided by the count underflows
        for value, total, count, close in (("0", "5e-324", 2, True), ("5e-324", "5e-324", 1, True),
                                           ("1", "5e-324", 2, False), ("2.5", "5", 2, True), ("2.5", "5.1", 2, False)):
            sql = profile._close_to_mean(number(value), number(total), str(count))
            assert conn.execute(sa.text(f"SELECT {sql}")).scalar() is close, (value, total, count)
    engine.dispose()


@pytest.mark.postgres
def test_non_finite_and_absurd_figures_are_never_close(postgres_server):
    """In PostgreSQL NaN = NaN and inf <= 1e-9 * inf: a daily_metrics average of NaN had passed."""
    engine = sa.create_engine(postgres_server.admin_url)
    number = "CAST('{}' AS DOUBLE PRECISION)".format
    with engine.connect() as conn:
        for a, b in (("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("NaN", "1"),
                     ("1e308", "-1e308"), ("1.7976931348623157e308", "1.7976931348623157e308")):
            close = profile._close(number(a), number(b))
            assert conn.execute(sa.text(f"SELECT {close}")).scalar() is False, (a, b)
    engine.dispose()


@pytest.mark.parametrize("loaded", ["postgresql"], indirect=True)  # SQLite stores NaN as NULL
@pytest.mark.parametrize("tamper", ["value = 'NaN'", "value = 'Infinity'", "value = '-Infinity'",
                                    "sum_value = 'Infinity'", "sum_value = 'NaN', value = 'NaN'"])
def test_a_non_finite_daily_metrics_figure_fails_consistency(loaded, tamper):
    loaded.execute(f"UPDATE daily_metrics SET {tamper} WHERE date = :d AND metric_type = 'heart_rate' "
                   f"AND user_id = {FIRST_USER}", d=DAY)

    outcome = loaded.validate()

    assert_fails(outcome, "daily_metrics_consistency", only=True)


def test_a_group_of_denormal_readings_passes(loaded):
    """Steps of 5e-324 and 0 are in range: their mean, sum / count, underflows (PostgreSQL had raised)."""
    user = loaded.scalar("SELECT min(user_id) FROM daily_metrics WHERE date = :d AND metric_type = 'steps' "
                         "AND sample_count >= 2", d=DAY)
    first = loaded.scalar("SELECT min(reading_id) FROM biometric_readings WHERE date = :d AND user_id = :u "
                          "AND metric_type = 'steps'", d=DAY, u=user)
    loaded.execute("UPDATE biometric_readings SET value = CASE WHEN reading_id = :r THEN 5e-324 ELSE 0 END "
                   "WHERE date = :d AND user_id = :u AND metric_type = 'steps'", d=DAY, u=user, r=first)
    loaded.execute("UPDATE daily_metrics SET sum_value = 5e-324, min_value = 0, max_value = 5e-324, value = 0 "
                   "WHERE date = :d AND user_id = :u AND metric_type = 'steps'", d=DAY, u=user)

    outcome = loaded.validate()

    assert outcome.exit_code == 0, outcome.stderr


def test_a_day_in_the_first_week_of_year_one_has_a_volume_verdict(loaded):
    """The week before it had overflowed the calendar (OverflowError: a traceback's last line, exit 1)."""
    ctx = checks.Context(dt.date(1, 1, 3), DayFacts(), {}, {}, 0.5, 2.0)
    with loaded.engine.connect() as conn:
        result = checks.volume(conn, ctx)
    assert result.passed and "no history" in result.detail
