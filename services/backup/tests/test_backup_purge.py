"""purge: only what is older than the cutoff goes (partitions, rows, staging folders); idempotent."""

from __future__ import annotations

import datetime as dt

import pytest

DATED = ("biometric_readings", "daily_metrics", "etl_dead_letters", "etl_runs")


def _counts(warehouse, tools) -> dict[str, dict[str, int]]:
    """{table: {"old": rows before the cutoff, "kept": rows on or after it}}."""
    out = {}
    for table in DATED:
        old = tools.scalar(warehouse.url, f"SELECT count(*) FROM {table} WHERE date < :c", c=tools.CUTOFF.isoformat())
        kept = tools.scalar(warehouse.url, f"SELECT count(*) FROM {table} WHERE date >= :c",
                            c=tools.CUTOFF.isoformat())
        out[table] = {"old": old, "kept": kept}
    return out


def _purge(warehouse, tools, *extra, env=None):
    return warehouse.backup("purge", "--date", tools.DAY.isoformat(), "--staging-path", str(warehouse.staging),
                            *extra, env=env)


def test_purge_drops_only_what_is_older_than_the_cutoff(warehouse, tools):
    staging = warehouse.staging
    old_day, last_old, cutoff, day = (d.isoformat() for d in tools.DAYS)
    assert tools.CUTOFF.isoformat() == cutoff
    for name in (old_day, last_old, cutoff, day):
        (staging / "backups" / name).mkdir(parents=True)
        (staging / "backups" / name / "manifest.json").write_text("{}")
    (staging / "backups" / "notes").mkdir()
    (staging / "2025-01-01-not-a-day").mkdir()
    before = _counts(warehouse, tools)
    assert all(c["old"] > 0 and c["kept"] > 0 for c in before.values()), before

    out = _purge(warehouse, tools)
    assert out.exit_code == 0, out.stderr
    details = out.manifest["details"]
    assert details["cutoff"] == cutoff and details["retention_days"] == 90
    assert sorted(details["deleted_staging"]) == sorted(
        (staging / rel).as_uri() for rel in (f"backups/{old_day}", f"backups/{last_old}", old_day, last_old))
    assert sorted(p.name for p in (staging / "backups").iterdir()) == sorted([cutoff, day, "notes"])
    assert {p.name for p in staging.iterdir()} >= {cutoff, day, "backups", "2025-01-01-not-a-day"}
    assert not {old_day, last_old} & {p.name for p in staging.iterdir()}

    after = _counts(warehouse, tools)
    for table in DATED:
        assert after[table]["old"] == 0, table
    for table in ("biometric_readings", "daily_metrics", "etl_dead_letters"):
        assert after[table]["kept"] == before[table]["kept"], table
    assert after["etl_runs"]["kept"] == before["etl_runs"]["kept"] + 1  # the purge run itself
    deleted = details["deleted_rows"]
    if warehouse.dialect == "postgresql":
        dropped = details["dropped_partitions"]
        assert [p["name"] for p in dropped] == [f"biometric_readings_p{d:%Y%m%d}" for d in tools.DAYS[:2]]
        assert sum(p["rows"] for p in dropped) == before["biometric_readings"]["old"]
        assert deleted["biometric_readings"] == 0
        assert tools.partitions(warehouse.url) == [f"biometric_readings_p{d:%Y%m%d}" for d in tools.DAYS[2:]]
    else:
        assert details["dropped_partitions"] == []
        assert deleted["biometric_readings"] == before["biometric_readings"]["old"]
    for table in ("daily_metrics", "etl_dead_letters", "etl_runs"):
        assert deleted[table] == before[table]["old"], table

    again = _purge(warehouse, tools)
    assert again.exit_code == 0, again.stderr
    assert again.manifest["details"]["dropped_partitions"] == []
    assert again.manifest["details"]["deleted_staging"] == []
    assert set(again.manifest["details"]["deleted_rows"].values()) == {0}
    assert _counts(warehouse, tools)["biometric_readings"] == after["biometric_readings"]


def test_retention_days_from_the_option_or_the_environment(sqlite_warehouse, tools):
    wh = sqlite_warehouse
    # 100 days from the environment: the cutoff is 2025-12-31, the oldest day, so nothing goes
    kept = _purge(wh, tools, env={"BIOMETRICS_RETENTION_DAYS": "100"})
    assert kept.exit_code == 0, kept.stderr
    assert kept.manifest["details"]["cutoff"] == "2025-12-31"
    assert set(kept.manifest["details"]["deleted_rows"].values()) == {0}
    # the option wins over the environment: one day keeps only the run date and the day before
    short = _purge(wh, tools, "--retention-days", "1", env={"BIOMETRICS_RETENTION_DAYS": "100"})
    assert short.exit_code == 0, short.stderr
    assert short.manifest["details"]["cutoff"] == (tools.DAY - dt.timedelta(days=1)).isoformat()
    assert tools.scalar(wh.url, "SELECT count(DISTINCT date) FROM biometric_readings") == 1
    assert sorted(p.name for p in wh.staging.iterdir() if p.name[:2] == "20") == [tools.DAY.isoformat()]


def test_purge_usage_errors(sqlite_warehouse, tools):
    zero = _purge(sqlite_warehouse, tools, "--retention-days", "0")
    assert zero.exit_code == 2 and "--retention-days" in zero.error_line
    bad_env = _purge(sqlite_warehouse, tools, env={"BIOMETRICS_RETENTION_DAYS": "ninety"})
    assert bad_env.exit_code == 2 and "BIOMETRICS_RETENTION_DAYS" in bad_env.error_line
    no_date = sqlite_warehouse.backup("purge", "--staging-path", str(sqlite_warehouse.staging))
    assert no_date.exit_code == 2 and "--date" in no_date.error_line
    for too_long in (_purge(sqlite_warehouse, tools, "--retention-days", "1000000"),
                     _purge(sqlite_warehouse, tools, "--retention-days", "99999999999"),
                     _purge(sqlite_warehouse, tools, env={"BIOMETRICS_RETENTION_DAYS": "2147483647"})):
        assert too_long.exit_code == 2 and "reaches before year 1" in too_long.error_line, too_long.stderr
    assert tools.scalar(sqlite_warehouse.url, "SELECT count(DISTINCT date) FROM biometric_readings") == 4


def test_purge_of_an_unmigrated_warehouse_is_a_configuration_error(tmp_path, tools):
    import sqlite3
    sqlite3.connect(tmp_path / "empty.db").close()
    out = tools.backup("purge", "--date", tools.DAY.isoformat(), "--staging-path", str(tmp_path),
                       env={"BIOMETRICS_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    assert out.exit_code == 2 and "biometrics-load migrate" in out.error_line


def test_staging_that_cannot_be_read_stops_the_purge_before_the_warehouse(sqlite_warehouse, tools, tmp_path):
    before = tools.content(sqlite_warehouse.url)
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "backups").write_text("a file where the backups' folder belongs")  # listing it fails
    out = sqlite_warehouse.backup("purge", "--date", tools.DAY.isoformat(), "--retention-days", "1",
                                  "--staging-path", str(unreadable))
    assert out.exit_code == 2 and "cannot list staging" in out.error_line, out.stderr
    assert tools.content(sqlite_warehouse.url) == before


@pytest.mark.parametrize("where", ["folder", "bucket", "prefix"])
def test_a_staging_path_that_does_not_exist_stops_the_purge_before_the_warehouse(sqlite_warehouse, tools, tmp_path,
                                                                                 where, request):
    """A mistyped folder or bucket: the warehouse was purged and every old backup kept, exit 0."""
    before = tools.content(sqlite_warehouse.url)
    env = {}
    if where == "folder":
        staging = str(tmp_path / "mistyped")
    elif where == "bucket":
        env = request.getfixturevalue("s3_env").env()
        staging = "s3://no-such-staging-bucket/pipeline"
    else:  # a prefix of an existing bucket that holds nothing
        s3 = request.getfixturevalue("s3_env")
        s3.create_bucket("purge-typo")
        s3.client().put_object(Bucket="purge-typo", Key="staging/2026-01-01/x", Body=b"x")
        env, staging = s3.env(), "s3://purge-typo/stagin"
    out = sqlite_warehouse.backup("purge", "--date", tools.DAY.isoformat(), "--retention-days", "1",
                                  "--staging-path", staging, env=env)
    expected = "holds nothing (a mistyped prefix?)" if where == "prefix" else f"the {where} does not exist"
    assert out.exit_code == 2 and expected in out.error_line and "nothing was purged" in out.error_line, out.stderr
    assert tools.content(sqlite_warehouse.url) == before
    assert not (tmp_path / "mistyped").exists()
