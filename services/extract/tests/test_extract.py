"""Extract: the day's rows from the database (SQLite and PostgreSQL) and the vendor files."""

from __future__ import annotations

import datetime as dt
import json
import math
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from biometrics_core import schemas
from biometrics_extract import vendor
from biometrics_extract.cli import main
from biometrics_testkit import sample

DAY = dt.date(2026, 1, 5)
UTC = dt.timezone.utc


def _source_table():
    start = dt.datetime(2026, 1, 5, tzinfo=UTC)
    times = [start, start + dt.timedelta(days=1, milliseconds=-1), start + dt.timedelta(days=1),
             start - dt.timedelta(microseconds=1), start + dt.timedelta(hours=12, microseconds=123456)]
    values = [60.0, None, 62.0, 63.0, float("nan")]
    return pa.table({
        "reading_id": pa.array(range(1, 6), pa.int64()), "user_id": pa.array([7] * 5, pa.int64()),
        "device_id": ["d"] * 5, "metric_type": ["heart_rate"] * 5, "value": pa.array(values, pa.float64()),
        "unit": ["bpm", None, "bpm", "bpm", ""], "created_at": pa.array(times, pa.timestamp("us", tz="UTC")),
        "ingested_at": pa.array(times, pa.timestamp("us", tz="UTC")),
    }, schema=sample.SOURCE_SCHEMA)


def _extract(url, staging, monkeypatch):
    monkeypatch.setenv("BIOMETRICS_DB_URL", url)
    result = CliRunner().invoke(main, ["readings", "--date", str(DAY), "--staging-path", str(staging)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def _check_day(staging, nan_survives: bool):
    rows = {r["reading_id"]: r for r in pq.read_table(staging / schemas.EXTRACT_READINGS).to_pylist()}
    assert set(rows) == {1, 2, 5}  # 00:00:00 and 23:59:59.999 in; next midnight and the day before out
    assert rows[1]["created_at"] == dt.datetime(2026, 1, 5, tzinfo=UTC)
    assert rows[2]["created_at"] == dt.datetime(2026, 1, 5, 23, 59, 59, 999000, tzinfo=UTC)
    assert rows[5]["created_at"].microsecond == 123456
    assert rows[2]["value"] is None and rows[2]["unit"] is None
    assert rows[5]["unit"] == ""  # an empty unit is not a missing one
    if nan_survives:
        assert math.isnan(rows[5]["value"])
    assert all(r["source"] == "database" for r in rows.values())


def test_sqlite_day_window(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    sample.write_source(url, _source_table())
    manifest = _extract(url, tmp_path / "staging", monkeypatch)
    assert manifest["rows_out"] == 3 and manifest["details"]["rows_by_source"] == {"database": 3}
    _check_day(tmp_path / "staging", nan_survives=False)  # SQLite stores NaN as NULL


@pytest.mark.postgres
def test_postgres_day_window_through_copy(postgres_server, tmp_path, monkeypatch):
    url = postgres_server.create_database("extract_src")
    sample.write_source(url, _source_table())
    monkeypatch.setenv("BIOMETRICS_BATCH_SIZE", "1")
    monkeypatch.setenv("BIOMETRICS_EXTRACT_CONNECTIONS", "3")  # slices split at 08:00 and 16:00
    manifest = _extract(url, tmp_path / "staging", monkeypatch)
    assert manifest["rows_out"] == 3
    _check_day(tmp_path / "staging", nan_survives=True)


def test_vendor_files_are_staged_with_their_vendor(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    generated = sample.generate_day(DAY, users=10, readings_per_user=3, vendor_rows=20)
    sample.write_source(url, generated.database)
    staging = tmp_path / "staging"
    sample.write_vendor_files(staging / "inbox", DAY, generated.vendors)
    other_day = staging / "inbox" / "acme" / "2026-01-04"
    other_day.mkdir(parents=True)
    (other_day / "old.csv").write_text("not even csv")  # another day's delivery is not read
    manifest = _extract(url, staging, monkeypatch)
    by_source = manifest["details"]["rows_by_source"]
    # acme: one late record of the day before; fitco: four records that repeat two ids
    assert by_source["acme"] == 21 and by_source["fitco"] == 14
    table = pq.read_table(staging / schemas.EXTRACT_READINGS)
    assert table.schema.equals(schemas.READINGS)
    assert table.num_rows == sum(by_source.values()) == manifest["rows_out"]


def test_vendor_files_under_a_staging_path_with_url_characters(tmp_path, monkeypatch):
    """'#' and '?' in a folder's name: the inbox below it is that folder's, not a truncated path's."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    generated = sample.generate_day(DAY, users=10, readings_per_user=3, vendor_rows=20)
    sample.write_source(url, generated.database)
    staging = tmp_path / "run#1?x" / "staging"
    sample.write_vendor_files(staging / "inbox", DAY, generated.vendors)
    manifest = _extract(url, staging, monkeypatch)
    assert manifest["details"]["rows_by_source"]["acme"] == 21 and manifest["details"]["rows_by_source"]["fitco"] == 14


def test_a_configured_inbox_that_does_not_exist_exits_2(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    sample.write_source(url, _source_table())
    monkeypatch.setenv("BIOMETRICS_DB_URL", url)
    monkeypatch.setenv("BIOMETRICS_INBOX_PATH", f"file://{tmp_path / 'mistyped'}")
    result = CliRunner().invoke(main, ["readings", "--date", str(DAY), "--staging-path", str(tmp_path / "staging")])
    assert result.exit_code == 2
    assert "BIOMETRICS_INBOX_PATH=file://" in result.output and "mistyped: the folder does not exist" in result.output
    assert not (tmp_path / "staging" / schemas.EXTRACT_READINGS).exists()


@pytest.mark.s3
def test_a_configured_s3_inbox_is_its_bucket_until_a_vendor_delivers(s3_env, tmp_path, monkeypatch):
    """An S3 prefix exists only while it holds objects: an inbox nobody delivered to is a day without
    deliveries; a bucket that does not exist is a mistake."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    sample.write_source(url, _source_table())
    s3_env.create_bucket("inbox-empty")
    monkeypatch.setenv("BIOMETRICS_INBOX_PATH", "s3://inbox-empty/vendors")
    manifest = _extract(url, tmp_path / "staging", monkeypatch)
    assert manifest["details"]["rows_by_source"] == {"database": 3}
    monkeypatch.setenv("BIOMETRICS_INBOX_PATH", "s3://no-such-inbox-bucket/vendors")
    result = CliRunner().invoke(main, ["readings", "--date", str(DAY), "--staging-path", str(tmp_path / "other")])
    assert result.exit_code == 2 and "the bucket does not exist" in result.output


def _extract_fails(url, staging, monkeypatch) -> str:
    monkeypatch.setenv("BIOMETRICS_DB_URL", url)
    result = CliRunner().invoke(main, ["readings", "--date", str(DAY), "--staging-path", str(staging)])
    assert result.exit_code == 2, result.output
    assert not (staging / schemas.EXTRACT_READINGS).exists()
    return result.output


def test_a_delivery_that_cannot_be_read_is_refused_not_skipped(tmp_path, monkeypatch):
    """A link to a file that is gone (a vendor volume not mounted) and a FIFO: neither is a file Arrow
    lists, and skipping them loaded the day without the vendor's readings, exit 0."""
    import os
    url = f"sqlite:///{tmp_path / 'app.db'}"
    sample.write_source(url, _source_table())
    folder = tmp_path / "staging" / "inbox" / "acme" / str(DAY)
    folder.mkdir(parents=True)
    (folder / "readings.csv").symlink_to(tmp_path / "unmounted" / "readings.csv")
    output = _extract_fails(url, tmp_path / "staging", monkeypatch)
    assert "acme/2026-01-05/readings.csv is a symbolic link to a file that does not exist" in output
    (folder / "readings.csv").unlink()
    os.mkfifo(folder / "readings.csv")
    output = _extract_fails(url, tmp_path / "staging", monkeypatch)
    assert "readings.csv is not a regular file (a FIFO, socket or device)" in output


def test_a_file_dated_after_2262_keeps_its_time(tmp_path, monkeypatch):
    """A record without ingested_at takes its file's time; Arrow's nanoseconds wrapped 2300 to 1715."""
    import os
    url = f"sqlite:///{tmp_path / 'app.db'}"
    sample.write_source(url, _source_table())
    folder = tmp_path / "staging" / "inbox" / "zeta" / str(DAY)
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text(json.dumps({"reading_id": 1, "user_id": 1, "device_id": "x", "metric_type": "spo2",
                                                "value": 98, "unit": None, "created_at": "2026-01-05T01:00:00"}) + "\n")
    delivered = dt.datetime(2300, 1, 1, tzinfo=UTC)
    os.utime(folder / "a.jsonl", (delivered.timestamp(), delivered.timestamp()))
    _extract(url, tmp_path / "staging", monkeypatch)
    rows = pq.read_table(tmp_path / "staging" / schemas.EXTRACT_READINGS).to_pylist()
    assert [r["ingested_at"] for r in rows if r["source"] == "zeta"] == [delivered]


def test_vendor_inbox_can_live_elsewhere(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    sample.write_source(url, _source_table())
    folder = tmp_path / "drop" / "zeta" / str(DAY)
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text(json.dumps({"reading_id": 1, "user_id": 1, "device_id": "x", "metric_type": "spo2",
                                                "value": 98, "unit": None, "created_at": "2026-01-05T01:00:00"}) + "\n")
    monkeypatch.setenv("BIOMETRICS_INBOX_PATH", f"file://{tmp_path / 'drop'}")
    manifest = _extract(url, tmp_path / "staging", monkeypatch)
    assert manifest["details"]["rows_by_source"]["zeta"] == 1


def test_vendor_values_and_times():
    received = dt.datetime(2026, 1, 6, tzinfo=UTC)
    csv = ("reading_id,user_id,device_id,metric_type,value,unit,created_at\n"
           "1,2,d,heart_rate,NaN,,2026-01-05T10:00:00+02:00\n"
           "2,2,d,heart_rate,,bpm,2026-01-05 10:00:00.5\n"
           "3,2,d,heart_rate,71.25,bpm,2026-01-05T10:00:00Z\n").encode()
    rows = vendor.parse_file("acme", "x.csv", csv, received).to_pylist()
    assert math.isnan(rows[0]["value"]) and rows[0]["unit"] is None
    assert rows[0]["created_at"] == dt.datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # offsets become UTC
    assert rows[1]["value"] is None and rows[1]["created_at"] == dt.datetime(2026, 1, 5, 10, 0, 0, 500000, tzinfo=UTC)
    assert rows[2]["value"] == 71.25 and rows[2]["ingested_at"] == received and rows[2]["source"] == "acme"


@pytest.mark.parametrize("line,message", [
    ('{"reading_id": "x1", "user_id": 1, "device_id": "d", "metric_type": "m", "value": 1, "unit": null, '
     '"created_at": "2026-01-05T00:00:00Z"}', "reading_id must be a whole number"),
    ('{"reading_id": 1, "user_id": 1, "device_id": "", "metric_type": "m", "value": 1, "unit": null, '
     '"created_at": "2026-01-05T00:00:00Z"}', "device_id is empty"),
    ('{"reading_id": 1, "user_id": 1, "device_id": "d", "metric_type": "m", "value": true, "unit": null, '
     '"created_at": "2026-01-05T00:00:00Z"}', "value must be a number"),
    ('[1, 2, 3]', "expected a JSON object"),
    # a nested object is not quoted (it may hold a whole record), a long text is cut
    ('{"reading_id": 1, "user_id": 1, "device_id": {"patient": "Jane Doe", "glucose": 231}, "metric_type": "m", '
     '"value": 1, "unit": null, "created_at": "2026-01-05T00:00:00Z"}', "device_id must be text, got a JSON object"),
    ('{"reading_id": 1, "user_id": 1, "device_id": "d", "metric_type": "m", "value": 1, "unit": null, '
     '"created_at": "%s"}' % ("x" * 100), "created_at is not an ISO 8601 timestamp: '" + "x" * 38 + "…"),
])
def test_malformed_json_lines(line, message):
    with pytest.raises(vendor._Malformed, match=message):
        vendor.parse_file("v", "x.jsonl", line.encode(), dt.datetime.now(UTC))


HEADER = "reading_id,user_id,device_id,metric_type,value,unit,created_at\n"


def _json_line(**fields) -> str:
    record = {"reading_id": 1, "user_id": 2, "device_id": "d", "metric_type": "spo2", "value": 97, "unit": None,
              "created_at": "2026-01-05T10:00:00Z", **fields}
    return json.dumps(record, ensure_ascii=False)


@pytest.mark.parametrize("name,content,message", [
    ("x.csv", HEADER.replace("\n", "\r") + "1,2,d,heart_rate,70,bpm,2026-01-05T10:00:00Z\r",
     "new-line character seen in unquoted field"),
    ("x.csv", HEADER + "1,2," + "d" * 200_000 + ",heart_rate,70,bpm,2026-01-05T10:00:00Z\n", "field larger than"),
    ("x.csv", HEADER.replace("created_at", "created_at,value") + "1,2,d,heart_rate,70,bpm,2026-01-05T10:00:00Z,999\n",
     "CSV header repeats column\\(s\\) value"),
    ("x.csv", HEADER + "1,\u00b2,d,heart_rate,70,bpm,2026-01-05T10:00:00Z\n", "user_id must be a whole number"),
    ("x.csv", HEADER + "--9001,2,d,heart_rate,70,bpm,2026-01-05T10:00:00Z\n", "reading_id must be a whole number"),
    ("x.csv", HEADER + "1,2,d\x001,heart_rate,70,bpm,2026-01-05T10:00:00Z\n", "device_id holds a NUL character"),
    ("x.jsonl", _json_line(metric_type="sp\x00o2"), "metric_type holds a NUL character"),
    ("x.jsonl", _json_line(value=10**400), "value 1000.* \\(401 digits\\) is too large for a number"),
    ("x.jsonl", _json_line()[:-1] + ', "value": 1e400}', "line 1: value 1e400 is too large for a number"),
    ("x.csv", HEADER + "1,2,d,heart_rate,1e400,bpm,2026-01-05T10:00:00Z\n", "line 2: value 1e400 is too large"),
    # float() would read these as 1000, 30 and 5
    ("x.csv", HEADER + "1,2,d,heart_rate,1_000,bpm,2026-01-05T10:00:00Z\n", "value must be a number, got '1_000'"),
    ("x.csv", HEADER + "1,2,d,heart_rate,\u0663\u0660,bpm,2026-01-05T10:00:00Z\n", "value must be a number"),
    ("x.jsonl", _json_line(value="\uff15"), "value must be a number"),
    # the JSON escape of half a surrogate pair decodes to a string no UTF-8 text can hold
    ("x.jsonl", _json_line()[:-1] + ', "device_id": "d\\ud800"}', "line 1: device_id holds an unpaired surrogate"),
    ("x.jsonl", _json_line()[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "line 1: JSON nested too deeply"),
])
def test_malformed_vendor_content(name, content, message):
    with pytest.raises(vendor._Malformed, match=message):
        vendor.parse_file("v", name, content.encode(), dt.datetime.now(UTC))


def test_a_huge_number_in_a_field_the_record_does_not_use_is_ignored():
    line = _json_line()[:-1] + ', "battery_capacitance": 1e400, "meta": {"x": -1e999}}'
    (row,) = vendor.parse_file("v", "x.jsonl", line.encode(), dt.datetime.now(UTC)).to_pylist()
    assert row["value"] == 97.0


def test_vendor_numbers_as_written():
    values = ["70", "-1.5e2", ".5", "5.", " 7 ", "+3", "nan", "-Infinity", "1e-400"]
    content = HEADER + "".join(f"{i},2,d,heart_rate,{v},bpm,2026-01-05T10:00:00Z\n" for i, v in enumerate(values))
    parsed = vendor.parse_file("v", "x.csv", content.encode(), dt.datetime.now(UTC)).column("value").to_pylist()
    assert parsed[:6] == [70.0, -150.0, 0.5, 5.0, 7.0, 3.0] and math.isnan(parsed[6])
    assert parsed[7:] == [-math.inf, 0.0]  # NaN and infinities are bad records for the transform, not bad files
    pair = vendor.parse_file("v", "x.jsonl", (_json_line()[:-1] + ', "device_id": "d\\ud83d\\ude00"}').encode(),
                             dt.datetime.now(UTC))
    assert pair.column("device_id").to_pylist() == ["d\U0001f600"]  # a whole surrogate pair is one character


def test_json_lines_end_at_newlines_only():
    # JSON allows U+2028, NEL and form feeds raw inside strings; str.splitlines() would break there
    lines = [_json_line(reading_id=1, device_id="d\u20281"), _json_line(reading_id=2, device_id="d\x85\x0c2")]
    rows = vendor.parse_file("v", "x.jsonl", "\r\n".join(lines).encode(), dt.datetime.now(UTC)).to_pylist()
    assert [r["device_id"] for r in rows] == ["d\u20281", "d\x85\x0c2"]


@pytest.mark.postgres
def test_small_driver_batches_still_make_large_row_groups(postgres_server, tmp_path, monkeypatch):
    url = postgres_server.create_database("extract_groups_src")
    day = sample.generate_day(DAY, users=40, readings_per_user=50, seed=3)
    sample.write_source(url, day.database)
    monkeypatch.setenv("BIOMETRICS_BATCH_SIZE", "16")  # the driver hands over many tiny batches
    monkeypatch.setenv("BIOMETRICS_EXTRACT_CONNECTIONS", "1")
    manifest = _extract(url, tmp_path / "staging", monkeypatch)

    (part,) = (tmp_path / "staging" / schemas.EXTRACT_READINGS).glob("*.parquet")
    metadata = pq.ParquetFile(part).metadata
    assert metadata.num_rows == manifest["rows_out"] > 1000
    assert metadata.num_row_groups == 1  # fewer rows than one row group: they are written together
    encodings = {metadata.row_group(0).column(i).path_in_schema: metadata.row_group(0).column(i).encodings
                 for i in range(metadata.num_columns)}
    assert "RLE_DICTIONARY" in encodings["metric_type"]  # dictionaries where values repeat, not on ids
    assert "RLE_DICTIONARY" not in encodings["reading_id"]


@pytest.mark.postgres
def test_a_role_that_may_not_read_the_source_is_a_configuration_error(postgres_server, tmp_path, monkeypatch):
    """No retry mends a missing privilege: exit 2 (it was exit 1, a failure worth retrying)."""
    import sqlalchemy as sa
    url = postgres_server.create_database("extract_noread")
    sample.write_source(url, _source_table())
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP ROLE IF EXISTS extract_noread_role"))
        conn.execute(sa.text("CREATE ROLE extract_noread_role LOGIN PASSWORD 'noread-pw'"))
    admin.dispose()
    role_url = sa.engine.make_url(url).set(username="extract_noread_role", password="noread-pw")
    monkeypatch.setenv("BIOMETRICS_DB_URL", role_url.render_as_string(hide_password=False))
    result = CliRunner().invoke(main, ["readings", "--date", str(DAY), "--staging-path", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    assert "permission denied for table raw_biometric_data" in result.output and "noread-pw" not in result.output


@pytest.mark.postgres
def test_a_postgres_source_of_other_column_types_breaks_its_schema(postgres_server, tmp_path, monkeypatch):
    """Text ids that are not numbers: exit 2 naming the column, as on SQLite (was Arrow's error, exit 1)."""
    import sqlalchemy as sa
    url = postgres_server.create_database("extract_text_ids")
    sample.write_source(url, _source_table())
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE raw_biometric_data ALTER reading_id TYPE text"))
        conn.execute(sa.text("UPDATE raw_biometric_data SET reading_id = 'a1b2' WHERE reading_id = '1'"))
    engine.dispose()
    monkeypatch.setenv("BIOMETRICS_DB_URL", url)
    result = CliRunner().invoke(main, ["readings", "--date", str(DAY), "--staging-path", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    assert "the source's raw_biometric_data breaks its schema (column reading_id" in result.output
    assert not (tmp_path / "s" / schemas.EXTRACT_READINGS).exists()


@pytest.mark.postgres
@pytest.mark.parametrize("time", ["infinity", "-infinity", "294270-01-01 00:00:00+00"])
def test_a_time_arrow_cannot_hold_is_refused_not_wrapped_around(postgres_server, tmp_path, monkeypatch, time):
    """ADBC decoded these ingested_at values, wrapped around to 290,000 BC, without a word: the extract
    and the transform passed them (exit 0), and the load refused the whole day."""
    import sqlalchemy as sa
    url = postgres_server.create_database("extract_wrapped_times")
    sample.write_source(url, _source_table())
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE raw_biometric_data SET ingested_at = CAST(:t AS timestamptz) "
                             "WHERE reading_id IN (2, 5)"), {"t": time})  # both on the day, in one slice
    engine.dispose()
    monkeypatch.setenv("BIOMETRICS_DB_URL", url)
    result = CliRunner().invoke(main, ["readings", "--date", str(DAY), "--staging-path", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    assert re.search("the source's raw_biometric_data breaks its schema \\(column ingested_at of reading_id [25] "
                     "and 1 more: 'infinity', '-infinity' or a time past the year 294246", result.output), result.output
    assert not (tmp_path / "s" / schemas.EXTRACT_READINGS).exists()


@pytest.mark.postgres
def test_text_of_a_sql_ascii_source_that_is_not_utf8(postgres_server, tmp_path, monkeypatch):
    """A SQL_ASCII database hands its bytes over as they are: the extract staged them (exit 0) and
    the transform could not read its input (exit 1), on every retry."""
    import sqlalchemy as sa
    admin = sa.create_engine(postgres_server.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text('DROP DATABASE IF EXISTS "extract_sql_ascii" WITH (FORCE)'))
        conn.execute(sa.text("CREATE DATABASE extract_sql_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
                             "TEMPLATE template0"))
    admin.dispose()
    url = postgres_server.url_for("extract_sql_ascii")
    sample.write_source(url, _source_table())
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE raw_biometric_data SET device_id = convert_from('\\x6465762de9'::bytea, "
                             "'SQL_ASCII') WHERE reading_id = 1"))
    engine.dispose()
    monkeypatch.setenv("BIOMETRICS_DB_URL", url)
    result = CliRunner().invoke(main, ["readings", "--date", str(DAY), "--staging-path", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    assert "breaks its schema (column device_id" in result.output


# the source's key on reading_id, as DDL after the columns; whether it makes the ids unique
_ID_KEYS = [
    ("PRIMARY KEY (reading_id)", True),
    ("UNIQUE (reading_id)", True),
    ("", False),
    ("PRIMARY KEY (reading_id, user_id)", False),
]
_ID_INDEXES = [
    ("CREATE UNIQUE INDEX ux_id ON raw_biometric_data (reading_id)", True),
    ("CREATE UNIQUE INDEX ux_id ON raw_biometric_data (reading_id) WHERE user_id > 0", False),
    ("CREATE INDEX ix_id ON raw_biometric_data (reading_id)", False),
    ("CREATE UNIQUE INDEX ux_id ON raw_biometric_data (reading_id, device_id)", False),
]


def _ids_are_unique(url: str, key: str, index: str | None) -> bool:
    import sqlalchemy as sa

    from biometrics_extract.database import ids_are_unique
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS raw_biometric_data"))
        conn.execute(sa.text("CREATE TABLE raw_biometric_data (reading_id BIGINT, user_id BIGINT, device_id TEXT, "
                             f"metric_type TEXT, value FLOAT, unit TEXT, created_at TIMESTAMP, "
                             f"ingested_at TIMESTAMP{', ' + key if key else ''})"))
        if index:
            conn.execute(sa.text(index))
    try:
        return ids_are_unique(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("key, index, unique", [(k, None, u) for k, u in _ID_KEYS] + [("", i, u) for i, u in _ID_INDEXES])
def test_the_source_keys_its_ids_only_by_a_key_on_reading_id_alone(postgres_server, tmp_path, key, index, unique):
    """Only a key on reading_id alone tells the transform that the database's ids need no check."""
    assert _ids_are_unique(f"sqlite:///{tmp_path / 'app.db'}", key, index) is unique
    assert _ids_are_unique(postgres_server.create_database("id_keys"), key, index) is unique


def test_the_manifest_says_whether_the_source_keys_its_ids(tmp_path, monkeypatch):
    keyed = f"sqlite:///{tmp_path / 'keyed.db'}"
    sample.write_source(keyed, _source_table())
    assert _extract(keyed, tmp_path / "a", monkeypatch)["details"]["database_ids_unique"] is True
    unkeyed = sample.write_sqlite_source_without_constraints(tmp_path / "unkeyed.db", _source_table(),
                                                             primary_key=False)
    assert _extract(unkeyed, tmp_path / "b", monkeypatch)["details"]["database_ids_unique"] is False


@pytest.mark.postgres
@pytest.mark.parametrize("shape", ["an invalid unique index", "a child table", "text ids"])
def test_a_key_that_does_not_cover_every_id_the_extract_reads_is_not_trusted(postgres_server, shape):
    """Each of these reported the ids unique, so the transform skipped them and the load refused the
    day on every retry: an index a failed CREATE UNIQUE INDEX CONCURRENTLY left INVALID, a key on a
    parent whose child (which the extract's SELECT reads) repeats an id, a text key ('1', '01')."""
    import sqlalchemy as sa

    from biometrics_extract.database import ids_are_unique
    url = postgres_server.create_database("id_cover")
    columns = ("user_id BIGINT, device_id TEXT, metric_type TEXT, value FLOAT, unit TEXT, created_at TIMESTAMPTZ, "
               "ingested_at TIMESTAMPTZ")
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if shape == "an invalid unique index":
            conn.execute(sa.text(f"CREATE TABLE raw_biometric_data (reading_id BIGINT, {columns})"))
            conn.execute(sa.text("INSERT INTO raw_biometric_data (reading_id) VALUES (1), (1)"))
            with pytest.raises(sa.exc.IntegrityError):
                conn.execute(sa.text("CREATE UNIQUE INDEX CONCURRENTLY ux_id ON raw_biometric_data (reading_id)"))
        elif shape == "a child table":
            conn.execute(sa.text(f"CREATE TABLE raw_biometric_data (reading_id BIGINT PRIMARY KEY, {columns})"))
            conn.execute(sa.text("CREATE TABLE raw_biometric_data_late () INHERITS (raw_biometric_data)"))
        else:
            conn.execute(sa.text(f"CREATE TABLE raw_biometric_data (reading_id TEXT PRIMARY KEY, {columns})"))
    try:
        assert ids_are_unique(engine) is False
    finally:
        engine.dispose()
