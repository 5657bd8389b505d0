"""The transform rules, one by one: units, reject reasons, duplicates, day boundaries."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from biometrics_core import schemas
from biometrics_transform.cli import main

DAY = dt.date(2026, 1, 5)
UTC = dt.timezone.utc
NOON = dt.datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def reading(reading_id, metric="heart_rate", value=70.0, unit="bpm", created_at=NOON, user_id=1, device="d1",
            source="database"):
    return {"reading_id": reading_id, "user_id": user_id, "device_id": device, "metric_type": metric,
            "value": value, "unit": unit, "created_at": created_at, "ingested_at": created_at, "source": source}


def extract_manifest(staging, day, rows):
    """The manifest the extract leaves beside what it staged (the transform checks its count)."""
    (staging / "manifests").mkdir(parents=True, exist_ok=True)
    (staging / "manifests" / "extract-readings.json").write_text(json.dumps(
        {"stage": "extract", "command": "readings", "date": day.isoformat(), "rows_out": rows, "status": "success"}))


def transform(tmp_path, records, day=DAY, files=1):
    """Stage ``records`` as the extract would (dealt round-robin over ``files`` Parquet files), transform them."""
    staging = tmp_path / "staging"
    (staging / schemas.EXTRACT_READINGS).mkdir(parents=True, exist_ok=True)
    for index in range(files):
        pq.write_table(pa.Table.from_pylist(records[index::files], schema=schemas.READINGS),
                       staging / schemas.EXTRACT_READINGS / f"part-{index}.parquet")
    extract_manifest(staging, day, len(records))
    result = CliRunner().invoke(main, ["readings", "--date", day.isoformat(), "--staging-path", str(staging)])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout.strip().splitlines()[-1])
    clean = {r["reading_id"]: r for r in pq.read_table(staging / schemas.TRANSFORM_READINGS).to_pylist()}
    dead = {int(r["source_record_id"]): r for r in pq.read_table(staging / schemas.TRANSFORM_DEAD_LETTERS).to_pylist()}
    metrics = {(r["user_id"], r["metric_type"]): r
               for r in pq.read_table(staging / schemas.TRANSFORM_DAILY_METRICS).to_pylist()}
    return manifest, clean, dead, metrics


@pytest.mark.parametrize("metric,value,unit,canonical_value,canonical_unit", [
    ("heart_rate", 72.0, "bpm", 72.0, "bpm"),
    ("heart_rate", 72.0, None, 72.0, "bpm"),
    ("heart_rate", 72.0, "", 72.0, "bpm"),  # empty like NULL: a CSV cannot tell the two apart
    ("spo2", 97.5, "percent", 97.5, "percent"),
    ("steps", 1234.0, "count", 1234.0, "count"),
    ("skin_temperature", 33.0, "celsius", 33.0, "celsius"),
    ("skin_temperature", 98.6, "fahrenheit", (98.6 - 32) * 5 / 9, "celsius"),
    ("respiratory_rate", 16.0, "breaths_per_min", 16.0, "breaths_per_min"),
    ("hrv_rmssd", 45.0, "ms", 45.0, "ms"),
    ("sleep_minutes", 420.0, "minutes", 420.0, "minutes"),
    ("sleep_minutes", 7.5, "hours", 450.0, "minutes"),
    ("blood_glucose", 100.0, "mg_dl", 100.0, "mg_dl"),
    ("blood_glucose", 5.5, "mmol_l", 5.5 * 18.016, "mg_dl"),
])
def test_units_are_normalised(tmp_path, metric, value, unit, canonical_value, canonical_unit):
    _, clean, dead, _ = transform(tmp_path, [reading(1, metric, value, unit)])
    assert not dead
    assert clean[1]["unit"] == canonical_unit
    assert math.isclose(clean[1]["value"], canonical_value, rel_tol=1e-12)


@pytest.mark.parametrize("record,reason", [
    (reading(1, metric="mood", value=3.0, unit="points"), "unknown_metric_type"),
    (reading(1, metric=None), "unknown_metric_type"),  # a source breaking its schema: the detail had been NULL
    (reading(1, unit="kg"), "unknown_unit"),
    (reading(1, metric="skin_temperature", value=33.0, unit="kelvin"), "unknown_unit"),
    (reading(1, value=None), "missing_value"),
    (reading(1, value=float("nan")), "missing_value"),
    (reading(1, value=251.0), "out_of_range"),
    (reading(1, value=24.99), "out_of_range"),
    (reading(1, value=float("inf")), "out_of_range"),
    (reading(1, value=float("-inf")), "out_of_range"),
    (reading(1, metric="spo2", value=100.01, unit="percent"), "out_of_range"),
    (reading(1, metric="steps", value=-1.0, unit="count"), "out_of_range"),
    (reading(1, metric="sleep_minutes", value=24.5, unit="hours"), "out_of_range"),  # 1470 minutes
    (reading(1, metric="blood_glucose", value=1.0, unit="mmol_l"), "out_of_range"),  # 18.016 mg/dl
    (reading(1, metric="skin_temperature", value=120.0, unit="fahrenheit"), "out_of_range"),
    (reading(1, created_at=dt.datetime(2026, 1, 4, 23, 59, 59, tzinfo=UTC), source="acme"), "outside_data_day"),
])
def test_each_reject_reason(tmp_path, record, reason):
    manifest, clean, dead, metrics = transform(tmp_path, [record, reading(2, user_id=2)])
    assert set(clean) == {2}
    assert dead[1]["reason"] == reason
    assert dead[1]["stage"] == "transform" and dead[1]["source"] == record["source"]
    original = json.loads(dead[1]["record"])  # the original fields, as valid JSON (NaN as a string)
    assert original["reading_id"] == 1 and original["metric_type"] == record["metric_type"]
    assert original["unit"] == record["unit"]
    value = record["value"]
    assert original["value"] == (value if value is None or math.isfinite(value)
                                 else "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity")
    assert dead[1]["detail"]
    assert manifest["rows_rejected"] == {reason: 1}
    assert manifest["rows_in"] == 2 and manifest["rows_out"] == 1
    assert set(metrics) == {(2, "heart_rate")}


def test_a_device_id_longer_than_the_natural_key_index_holds_is_a_dead_letter(tmp_path):
    """A 2.7 kB random device_id passed, and PostgreSQL's B-tree refused its index entry: the load
    refused the whole day, on every retry."""
    from biometrics_core.catalogue import MAX_DEVICE_ID_BYTES
    longest = "x" * MAX_DEVICE_ID_BYTES
    too_long = "é" * (MAX_DEVICE_ID_BYTES // 2 + 1)  # 513 characters, 1026 bytes
    manifest, clean, dead, _ = transform(tmp_path, [reading(1, device=longest), reading(2, user_id=2, device=too_long)])
    assert set(clean) == {1} and clean[1]["device_id"] == longest
    assert dead[2]["reason"] == "device_id_too_long"
    assert dead[2]["detail"] == f"device_id of 1026 bytes is longer than {MAX_DEVICE_ID_BYTES}"
    assert json.loads(dead[2]["record"])["device_id"] == too_long
    assert manifest["rows_rejected"] == {"device_id_too_long": 1}


@pytest.mark.parametrize("missing", ["user_id", "device_id", "created_at", "ingested_at"])
def test_a_record_without_a_key_is_a_dead_letter(tmp_path, missing):
    # the source's schema forbids it; a source that breaks its schema must not make the load refuse the day
    record = {**reading(1), missing: None}
    manifest, clean, dead, _ = transform(tmp_path, [record, reading(2, user_id=2)])
    assert set(clean) == {2}
    assert dead[1]["reason"] == "missing_key" and dead[1]["detail"] == f"{missing} is NULL"
    assert json.loads(dead[1]["record"])[missing] is None
    assert manifest["rows_rejected"] == {"missing_key": 1}


def test_range_limits_are_inclusive(tmp_path):
    records = [reading(1, value=25.0), reading(2, value=250.0, device="d2"),
               reading(3, metric="steps", value=0.0, unit="count"),
               reading(4, metric="sleep_minutes", value=24.0, unit="hours")]
    _, clean, dead, _ = transform(tmp_path, records)
    assert set(clean) == {1, 2, 3, 4} and not dead


def test_duplicates_keep_the_lowest_reading_id(tmp_path):
    records = [reading(30, value=71.0), reading(10, value=70.0), reading(20, value=72.0),
               reading(40, value=70.0, device="other-device")]
    _, clean, dead, metrics = transform(tmp_path, records)
    assert set(clean) == {10, 40}
    assert {k: v["reason"] for k, v in dead.items()} == {20: "duplicate", 30: "duplicate"}
    assert "database:10" in dead[20]["detail"]
    assert metrics[(1, "heart_rate")]["sample_count"] == 2


def test_duplicates_across_staged_files(tmp_path):
    # the same row numbers in each file: a row is told apart by its file as well
    records = [reading(1, device="a"), reading(11, device="b"), reading(3, device="c"),
               reading(2, device="a"), reading(12, device="b"), reading(4, device="d")]
    manifest, clean, dead, _ = transform(tmp_path, records, files=3)
    assert set(clean) == {1, 3, 4, 11}
    assert {k: (v["reason"], v["detail"].split(" (")[0]) for k, v in dead.items()} == {
        2: ("duplicate", "duplicate of database:1"), 12: ("duplicate", "duplicate of database:11")}
    assert manifest["rows_in"] == 6 and manifest["rows_out"] == 4


def test_a_broken_record_never_pushes_out_a_good_duplicate(tmp_path):
    _, clean, dead, _ = transform(tmp_path, [reading(1, value=None), reading(2, value=70.0)])
    assert set(clean) == {2} and dead[1]["reason"] == "missing_value"


def outcomes(tmp_path):
    """The transform's outcomes by (source, reading_id): the clean keys, and every dead letter in a list
    (a repeated id can have several)."""
    staging = tmp_path / "staging"
    clean = {(r["source"], r["reading_id"]) for r in pq.read_table(staging / schemas.TRANSFORM_READINGS).to_pylist()}
    dead = sorted((r["source"], int(r["source_record_id"]), r["reason"], r["detail"])
                  for r in pq.read_table(staging / schemas.TRANSFORM_DEAD_LETTERS).to_pylist())
    return clean, dead


def test_a_vendor_id_given_to_two_readings_sets_both_aside(tmp_path):
    records = [reading(1, device="a", source="acme"), reading(1, device="b", source="acme"),
               reading(1, device="a"),                      # the database's id 1: another source, no conflict
               reading(2, device="c", source="acme"), reading(1, device="a", source="fitco")]
    manifest, *_ = transform(tmp_path, records)
    clean, dead = outcomes(tmp_path)
    assert clean == {("database", 1), ("acme", 2)}
    assert [d[:3] for d in dead] == [("acme", 1, "conflicting_reading_id"), ("acme", 1, "conflicting_reading_id"),
                                     ("fitco", 1, "duplicate")]
    assert dead[0][3] == ("reading_id 1 of acme names 2 records of the day that differ in "
                          "(user_id, device_id, metric_type, created_at): none is kept")
    assert dead[2][3].startswith("duplicate of database:1 ")
    assert manifest["rows_rejected"] == {"conflicting_reading_id": 2, "duplicate": 1}


def test_a_conflicting_id_is_found_across_vendor_files(tmp_path):
    records = [reading(7, device="a", source="acme"), reading(7, device="b", source="acme"),
               reading(7, device="c", source="acme"), reading(8, device="d", source="acme")]
    transform(tmp_path, records, files=2)
    clean, dead = outcomes(tmp_path)
    assert clean == {("acme", 8)}
    assert [d[:3] for d in dead] == [("acme", 7, "conflicting_reading_id")] * 3
    assert "names 3 records" in dead[0][3]


def test_a_vendor_record_sent_twice_is_a_duplicate_not_a_conflict(tmp_path):
    records = [reading(3, source="acme"), reading(3, source="acme")]
    manifest, *_ = transform(tmp_path, records)
    clean, dead = outcomes(tmp_path)
    assert clean == {("acme", 3)}
    assert [d[:3] for d in dead] == [("acme", 3, "duplicate")]
    assert manifest["rows_in"] == 2 and manifest["rows_out"] == 1


def test_a_broken_copy_of_a_vendor_id_is_no_conflict(tmp_path):
    # the rules come first: the broken record is rejected for itself and the good one is kept
    records = [reading(4, device="a", value=None, source="acme"), reading(4, device="b", source="acme")]
    transform(tmp_path, records)
    clean, dead = outcomes(tmp_path)
    assert clean == {("acme", 4)}
    assert [d[:3] for d in dead] == [("acme", 4, "missing_value")]


def test_a_conflicting_record_never_pushes_out_a_good_duplicate(tmp_path):
    # acme:1 (device a) and acme:9 share a natural key; acme:1 is ambiguous, so acme:9 is the reading kept
    records = [reading(1, device="a", source="acme"), reading(1, device="b", source="acme"),
               reading(9, device="a", source="acme")]
    transform(tmp_path, records)
    clean, dead = outcomes(tmp_path)
    assert clean == {("acme", 9)}
    assert [d[:3] for d in dead] == [("acme", 1, "conflicting_reading_id")] * 2


def test_same_key_in_converted_units_is_a_duplicate(tmp_path):
    records = [reading(5, "sleep_minutes", 7.0, "hours"), reading(6, "sleep_minutes", 420.0, "minutes")]
    _, clean, dead, _ = transform(tmp_path, records)
    assert set(clean) == {5} and dead[6]["reason"] == "duplicate"


def test_day_boundaries(tmp_path):
    start = dt.datetime(2026, 1, 5, tzinfo=UTC)
    records = [
        reading(1, created_at=start, source="acme"),                                           # 00:00:00: in
        reading(2, created_at=start + dt.timedelta(days=1, milliseconds=-1), source="acme"),   # 23:59:59.999: in
        reading(3, created_at=start + dt.timedelta(days=1), source="acme"),                    # next 00:00:00: out
        reading(4, created_at=start - dt.timedelta(microseconds=1), source="acme"),            # previous day: out
    ]
    _, clean, dead, _ = transform(tmp_path, records)
    assert set(clean) == {1, 2}
    assert {k: v["reason"] for k, v in dead.items()} == {3: "outside_data_day", 4: "outside_data_day"}


def test_daily_metrics_aggregate_the_clean_readings(tmp_path):
    values = [60.0, 70.0, 95.5]
    records = [reading(i + 1, value=v, created_at=NOON + dt.timedelta(minutes=i)) for i, v in enumerate(values)]
    records.append(reading(9, value=999.0, created_at=NOON + dt.timedelta(hours=1)))  # out of range: not counted
    records.append(reading(10, metric="skin_temperature", value=98.6, unit="fahrenheit"))
    _, _, _, metrics = transform(tmp_path, records)
    hr = metrics[(1, "heart_rate")]
    assert hr["sample_count"] == 3 and hr["date"] == DAY
    assert math.isclose(hr["value"], sum(values) / 3) and hr["min_value"] == 60.0 and hr["max_value"] == 95.5
    assert math.isclose(hr["sum_value"], sum(values))
    assert math.isclose(metrics[(1, "skin_temperature")]["value"], 37.0)


def test_every_row_has_exactly_one_outcome(tmp_path):
    from biometrics_testkit.sample import generate_readings
    table = generate_readings(DAY, 5000, seed=7)
    records = [{**r, "source": "database"} for r in table.to_pylist()]
    manifest, clean, dead, metrics = transform(tmp_path, records)
    assert len(clean) + len(dead) == 5000
    assert not set(clean) & set(dead)
    assert sum(m["sample_count"] for m in metrics.values()) == len(clean)
    assert list(metrics) == sorted(metrics)  # in the warehouse's key order: the load's COPY appends to it
    assert set(manifest["rows_rejected"]) == {"unknown_unit", "unknown_metric_type", "missing_value",
                                              "out_of_range", "duplicate"}


def test_dead_letters_say_their_times_in_utc_whatever_the_hosts_time_zone(tmp_path):
    """DuckDB formats times in its session time zone, the host's unless told otherwise."""
    staging = tmp_path / "staging"
    (staging / schemas.EXTRACT_READINGS).mkdir(parents=True)
    late = dt.datetime(2026, 1, 5, 23, 30, tzinfo=UTC)
    records = [reading(1, value=999.0, created_at=late), reading(2, created_at=late + dt.timedelta(hours=1), source="acme")]
    pq.write_table(pa.Table.from_pylist(records, schema=schemas.READINGS), staging / schemas.EXTRACT_READINGS / "p.parquet")
    extract_manifest(staging, DAY, len(records))
    cli = Path(sys.executable).with_name("biometrics-transform")
    done = subprocess.run([str(cli), "readings", "--date", DAY.isoformat(), "--staging-path", str(staging)],
                          env={**os.environ, "TZ": "Asia/Kolkata"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    dead = {int(r["source_record_id"]): r for r in pq.read_table(staging / schemas.TRANSFORM_DEAD_LETTERS).to_pylist()}
    assert json.loads(dead[1]["record"])["created_at"] == "2026-01-05T23:30:00.000000Z"
    assert json.loads(dead[1]["record"])["ingested_at"] == "2026-01-05T23:30:00.000000Z"
    assert dead[2]["detail"] == "created_at 2026-01-06T00:30:00.000000Z is not on 2026-01-05"


def _refused(staging) -> str:
    result = CliRunner().invoke(main, ["readings", "--date", DAY.isoformat(), "--staging-path", str(staging)])
    assert result.exit_code == 2, result.output
    return result.output.strip().splitlines()[-1]


def test_staged_files_must_be_what_the_extract_wrote(tmp_path):
    manifest, *_ = transform(tmp_path, [reading(1), reading(2, user_id=2)])
    staging = tmp_path / "staging"
    published = {p: p.read_bytes() for p in (staging / "transform").rglob("*.parquet")}
    (staging / schemas.EXTRACT_READINGS / "part-1.parquet").write_bytes(
        (staging / schemas.EXTRACT_READINGS / "part-0.parquet").read_bytes())  # a part copied twice
    assert "the staged readings have 4 rows, the extract wrote 2" in _refused(staging)
    (staging / "manifests" / "extract-readings.json").unlink()
    assert "extract-readings.json: run biometrics-extract readings for 2026-01-05 first" in _refused(staging)
    assert {p: p.read_bytes() for p in (staging / "transform").rglob("*.parquet")} == published  # nothing replaced


def test_a_failed_publish_leaves_no_manifest_of_the_transform(tmp_path, monkeypatch):
    """Its outputs are replaced one by one: a failure in between leaves a mix, which the load must refuse."""
    from biometrics_core.errors import ConfigError
    from biometrics_core.staging import Staging

    transform(tmp_path, [reading(1), reading(2, user_id=2)])
    staging = tmp_path / "staging"
    original = Staging.publish

    def publish_one_then_fail(self, local_dir, rel):
        if rel != schemas.TRANSFORM_READINGS:
            raise ConfigError(f"cannot publish {self.uri(rel)}: injected")
        original(self, local_dir, rel)

    monkeypatch.setattr(Staging, "publish", publish_one_then_fail)
    result = CliRunner().invoke(main, ["readings", "--date", DAY.isoformat(), "--staging-path", str(staging)])
    assert result.exit_code == 2 and "injected" in result.output
    assert not (staging / "manifests" / "transform-readings.json").exists()


def test_a_staged_row_without_a_source_is_a_damaged_file(tmp_path):
    staging = tmp_path / "staging"
    (staging / schemas.EXTRACT_READINGS).mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([reading(1), reading(2, source=None)], schema=schemas.READINGS),
                   staging / schemas.EXTRACT_READINGS / "p.parquet")
    extract_manifest(staging, DAY, 2)
    assert "the staged readings have 1 rows without a source" in _refused(staging)


@pytest.mark.parametrize("damage,says", [
    (lambda path: path.write_bytes(path.read_bytes()[:-100]), "are not the extract's Parquet files"),  # truncated
    (lambda path: path.write_bytes(b""), "are not the extract's Parquet files"),
    (lambda path: path.write_text("reading_id,user_id\n1,2\n"), "are not the extract's Parquet files"),
    (lambda path: pq.write_table(pq.read_table(path).drop_columns(["unit"]), path), "(unit missing)"),
    (lambda path: pq.write_table(pq.read_table(path).set_column(4, "value", pa.array(["70", "71"])), path),
     "(value VARCHAR)"),
])
def test_damaged_staged_files_are_refused_in_one_line(tmp_path, damage, says):
    staging = tmp_path / "staging"
    (staging / schemas.EXTRACT_READINGS).mkdir(parents=True)
    path = staging / schemas.EXTRACT_READINGS / "p.parquet"
    pq.write_table(pa.Table.from_pylist([reading(1), reading(2, user_id=2)], schema=schemas.READINGS), path)
    extract_manifest(staging, DAY, 2)
    damage(path)
    line = _refused(staging)
    assert says in line and line.endswith("rerun the extract"), line
