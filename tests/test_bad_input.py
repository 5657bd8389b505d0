"""Bad input: a clear one-line error, exit 2, no secret in the message, nothing written."""

from __future__ import annotations

import datetime as dt

import pytest

from biometrics_testkit import sample
from biometrics_testkit.harness import run_stage

DAY = dt.date(2026, 1, 5)


def _one_line_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def sqlite_source(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    sample.write_source(url, sample.generate_day(DAY, users=20, readings_per_user=5).database)
    return url


@pytest.mark.parametrize("stage,command", [("extract", "readings"), ("transform", "readings"), ("load", "readings"),
                                           ("validate", "readings"), ("backup", "create")])
@pytest.mark.parametrize("bad_date", ["2026-13-01", "yesterday", "2026-1-5x", "20260105", "2026-W02-1",
                                      "9999-12-31"])
def test_invalid_date(stage, command, bad_date, tmp_path):
    result = run_stage(stage, command, "--date", bad_date, "--staging-path", str(tmp_path), check=False,
                       env={"BIOMETRICS_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'wh.db'}"})
    _one_line_error(result, "invalid --date", bad_date)
    assert list(tmp_path.iterdir()) == []


def test_missing_date_is_a_usage_error(tmp_path):
    result = run_stage("extract", "readings", "--staging-path", str(tmp_path), check=False)
    _one_line_error(result, "--date")


@pytest.mark.parametrize("stage", ["load", "validate"])
def test_missing_warehouse_url(stage, tmp_path, monkeypatch):
    monkeypatch.delenv("BIOMETRICS_WAREHOUSE_URL", raising=False)
    result = run_stage(stage, "readings", "--date", str(DAY), "--staging-path", str(tmp_path), check=False,
                       env={"BIOMETRICS_WAREHOUSE_URL": "", "BIOMETRICS_DB_URL": "sqlite:///x.db"})
    _one_line_error(result, "BIOMETRICS_WAREHOUSE_URL")


def test_missing_source_url(tmp_path, monkeypatch):
    monkeypatch.delenv("BIOMETRICS_DB_URL", raising=False)
    result = run_stage("extract", "readings", "--date", str(DAY), "--staging-path", str(tmp_path), check=False)
    _one_line_error(result, "BIOMETRICS_DB_URL")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_wrong_password_is_not_echoed(postgres_server, tmp_path):
    postgres_server.create_database("badpw")
    wrong = "Sup3r-Secret-Wrong"
    url = postgres_server.url_for("badpw", password=wrong)
    runs = (("extract", ["readings", "--date", str(DAY), "--staging-path", str(tmp_path / "extract")],
             {"BIOMETRICS_DB_URL": url}),
            ("load", ["migrate"], {"BIOMETRICS_WAREHOUSE_URL": url}),
            ("backup", ["create", "--date", str(DAY), "--staging-path", str(tmp_path / "backup")],
             {"BIOMETRICS_WAREHOUSE_URL": url}))
    for stage, args, env in runs:
        result = run_stage(stage, *args, env=env, check=False)
        line = _one_line_error(result, "cannot connect", "password authentication failed")
        assert wrong not in result.stderr + result.stdout
        assert postgres_server.password not in result.stderr + result.stdout
        assert "***" in line
        assert not (tmp_path / stage).exists()


@pytest.mark.parametrize("url,expected", [
    # libpq's password as a query parameter
    ("postgresql+psycopg2:///wh?host=127.0.0.1&port=1&user=etl&password=Qu3ry-Secret", "cannot connect"),
    # a password typed with an unencoded '@': neither half may show
    ("postgresql+psycopg2://etl:Qu3ry@Secret@127.0.0.1:1/wh", "unencoded '@'"),
    # a bare postgresql:// (SQLAlchemy 2.1 would take psycopg 3, which the stages do not ship)
    ("postgresql://etl:Qu3ry-Secret@127.0.0.1:1/wh", "cannot connect"),
    ("mysql://etl:Qu3ry-Secret@127.0.0.1:1/wh", "unsupported database driver"),
])
def test_warehouse_urls_fail_cleanly_without_their_password(url, expected, tmp_path):
    result = run_stage("load", "migrate", env={"BIOMETRICS_WAREHOUSE_URL": url}, check=False)
    _one_line_error(result, expected)
    assert "Qu3ry" not in result.stderr + result.stdout and "Secret" not in result.stderr + result.stdout


@pytest.mark.parametrize("stage,variable,value,expected", [
    ("extract", "BIOMETRICS_LOG_LEVEL", "LOUD", "is not one of DEBUG, INFO, WARNING, ERROR"),
    ("extract", "BIOMETRICS_BATCH_SIZE", "99999999999999999999999", "must be at most 2147483647"),
    ("transform", "BIOMETRICS_THREADS", "x", "BIOMETRICS_THREADS='x' is not a whole number"),
    ("transform", "BIOMETRICS_THREADS", "-1", "BIOMETRICS_THREADS=-1 must be at least 1"),
    ("transform", "BIOMETRICS_THREADS", "100000", "BIOMETRICS_THREADS=100000 must be at most 1024"),
    ("transform", "BIOMETRICS_MEMORY_LIMIT", "lots", "is not a memory size"),
    ("transform", "BIOMETRICS_MEMORY_LIMIT", "0MB", "is not a memory size"),
])
def test_invalid_settings(stage, variable, value, expected, tmp_path, sqlite_source):
    result = run_stage(stage, "readings", "--date", str(DAY), "--staging-path", str(tmp_path / "s"),
                       env={"BIOMETRICS_DB_URL": sqlite_source, variable: value}, check=False)
    _one_line_error(result, expected)
    assert not (tmp_path / "s").exists()


def test_a_staging_path_of_another_day(tmp_path, sqlite_source):
    staging = str(tmp_path / "staging")
    env = {"BIOMETRICS_DB_URL": sqlite_source, "BIOMETRICS_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'wh.db'}"}
    for stage in ("extract", "transform"):
        run_stage(stage, "readings", "--date", str(DAY), "--staging-path", staging, env=env)
    written = sorted(p.relative_to(staging) for p in (tmp_path / "staging").rglob("*"))
    for stage, other in (("transform", "2026-01-06"), ("load", "2026-01-07"), ("validate", "2026-01-08")):
        result = run_stage(stage, "readings", "--date", other, "--staging-path", staging, env=env, check=False)
        _one_line_error(result, "extract-readings.json is for 2026-01-05, not " + other, "another day's run")
    # the first stage too: it would replace the day's staged run (and miss the vendors' files of its inbox)
    result = run_stage("extract", "readings", "--date", "2026-01-09", "--staging-path", staging, env=env, check=False)
    _one_line_error(result, "-readings.json is for 2026-01-05, not 2026-01-09", "give each day its own staging path")
    assert sorted(p.relative_to(staging) for p in (tmp_path / "staging").rglob("*")) == written
    assert not (tmp_path / "wh.db").exists()
    # a manifest of the day cut short (a full disk while it was written) does not stop the day's rerun
    (tmp_path / "staging" / "manifests" / "transform-readings.json").write_text("")
    run_stage("extract", "readings", "--date", str(DAY), "--staging-path", staging, env=env)


def test_missing_staging_input(tmp_path):
    env = {"BIOMETRICS_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'wh.db'}"}
    result = run_stage("transform", "readings", "--date", str(DAY), "--staging-path", str(tmp_path / "empty"),
                       check=False, env=env)
    _one_line_error(result, "missing staging input", "extract/readings")
    result = run_stage("load", "readings", "--date", str(DAY), "--staging-path", str(tmp_path / "empty"),
                       check=False, env=env)
    _one_line_error(result, "missing staging input", "transform/readings")
    assert not (tmp_path / "empty").exists() and not (tmp_path / "wh.db").exists()


@pytest.mark.parametrize("name,content,expected", [
    ("readings.csv", "reading_id,user_id,device_id\n1,2,d\n", "lacks column(s) metric_type"),
    ("readings.csv", "reading_id,user_id,device_id,metric_type,value,unit,created_at\n"
                     "1,2,d,heart_rate,seventy,bpm,2026-01-05T10:00:00Z\n", "line 2: value must be a number"),
    ("readings.csv", "reading_id,user_id,device_id,metric_type,value,unit,created_at\n"
                     "1,2,d,heart_rate,70,bpm,yesterday\n", "created_at is not an ISO 8601 timestamp"),
    ("readings.jsonl", '{"reading_id": 1, "user_id": 2}\n{not json\n', "line 1: missing field(s)"),
    ("readings.jsonl", '{"reading_id": 1, "user_id": 2, "device_id": "d", "metric_type": "spo2", "value": 97, '
                       '"unit": null, "created_at": "2026-01-05T10:00:00Z"}\n{not json\n', "line 2: invalid JSON"),
    ("readings.csv", "reading_id,user_id,device_id,metric_type,value,unit,created_at\n"
                     "99999999999999999999,2,d,heart_rate,70,bpm,2026-01-05T10:00:00Z\n",
     "line 2: reading_id 99999999999999999999 does not fit in 64 bits"),
    ("readings.jsonl", '{"reading_id": 1, "user_id": -9223372036854775809, "device_id": "d", "metric_type": "spo2", '
                       '"value": 97, "unit": null, "created_at": "2026-01-05T10:00:00Z"}\n',
     "line 1: user_id -9223372036854775809 does not fit in 64 bits"),
    ("readings.csv", "reading_id,user_id,device_id,metric_type,value,unit,created_at\n"
                     "1,2,d,heart_rate,70,bpm,9999-12-31T23:00:00-05:00\n",
     "line 2: created_at '9999-12-31T23:00:00-05:00' is outside the representable years in UTC"),
    ("readings.xlsx", "PK", "unsupported file type"),
])
def test_malformed_vendor_file(name, content, expected, tmp_path, sqlite_source):
    staging = tmp_path / "staging"
    folder = staging / "inbox" / "acme" / str(DAY)
    folder.mkdir(parents=True)
    (folder / name).write_text(content)
    result = run_stage("extract", "readings", "--date", str(DAY), "--staging-path", f"file://{staging}",
                       env={"BIOMETRICS_DB_URL": sqlite_source}, check=False)
    _one_line_error(result, "malformed vendor file", name, expected)
    assert sorted(p.name for p in staging.iterdir()) == ["inbox"]  # nothing written


def test_a_vendor_folder_with_the_database_source_name(tmp_path, sqlite_source):
    staging = tmp_path / "staging"
    folder = staging / "inbox" / "database" / str(DAY)
    folder.mkdir(parents=True)
    (folder / "readings.csv").write_text("reading_id,user_id,device_id,metric_type,value,unit,created_at\n"
                                         "1,2,d,heart_rate,70,bpm,2026-01-05T10:00:00Z\n")
    result = run_stage("extract", "readings", "--date", str(DAY), "--staging-path", f"file://{staging}",
                       env={"BIOMETRICS_DB_URL": sqlite_source}, check=False)
    _one_line_error(result, "vendor folder", "'database'", "rename")
    assert sorted(p.name for p in staging.iterdir()) == ["inbox"]  # nothing written


@pytest.mark.parametrize("column,value,expected", [
    ("value", "'abc'", "column value: Could not convert 'abc'"),
    ("user_id", "'bob'", "column user_id"),
    ("created_at", "'2026-01-05 10:00:00 garbage'", "Invalid isoformat string"),
])
def test_a_sqlite_source_that_breaks_its_types(column, value, expected, tmp_path):
    import sqlite3
    url = sample.write_sqlite_source_without_constraints(tmp_path / "app.db",
                                                         sample.generate_day(DAY, users=5, readings_per_user=4).database)
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.execute(f"UPDATE raw_biometric_data SET {column} = {value} WHERE reading_id = 3")
    result = run_stage("extract", "readings", "--date", str(DAY), "--staging-path", str(tmp_path / "s"),
                       env={"BIOMETRICS_DB_URL": url}, check=False)
    _one_line_error(result, "the source's raw_biometric_data breaks its schema", expected)
    assert not (tmp_path / "s").exists() or sorted(p.name for p in (tmp_path / "s").iterdir()) == []


def test_source_without_the_table(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    import sqlite3
    sqlite3.connect(tmp_path / "empty.db").close()
    result = run_stage("extract", "readings", "--date", str(DAY), "--staging-path", str(tmp_path / "s"),
                       env={"BIOMETRICS_DB_URL": url}, check=False)
    _one_line_error(result, "raw_biometric_data")
    assert not (tmp_path / "s").exists()  # nothing written, not even the staging folder
