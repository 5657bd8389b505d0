"""``biometrics-validate readings`` end to end: a correctly loaded day passes, inputs it cannot
judge exit 2 with a clear message."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from biometrics_testkit import expected

DAY = dt.date(2026, 1, 5)  # the day conftest's pipeline loads

CHECK_NAMES = ["reconciliation", "dead_letter_reasons", "null_keys", "values_in_range", "daily_metrics_consistency",
               "readings_on_their_day", "uniqueness", "volume"]


def _reference(sample_day) -> tuple[expected.Expected, int]:
    """The independent reference computation over every source reading of the day."""
    start = dt.datetime.combine(DAY, dt.time.min, tzinfo=dt.timezone.utc)
    created = sample_day.database.column("created_at")
    in_day = pc.and_(pc.greater_equal(created, pa.scalar(start, created.type)),
                     pc.less(created, pa.scalar(start + dt.timedelta(days=1), created.type)))
    records = [{**r, "source": "database"} for r in sample_day.database.filter(in_day).to_pylist()]
    for vendor, table in sample_day.vendors.items():
        records += [{**r, "source": vendor} for r in table.to_pylist()]
    return expected.compute(DAY, records), len(records)


def test_correctly_loaded_day_passes_every_check(loaded, sample_day):
    outcome = loaded.validate()

    assert outcome.exit_code == 0, outcome.stderr
    assert [c["name"] for c in outcome.manifest["details"]["checks"]] == CHECK_NAMES
    assert outcome.failed == []
    reference, source_rows = _reference(sample_day)
    manifest = outcome.manifest
    assert manifest["status"] == "success"
    assert manifest["rows_in"] == source_rows
    assert manifest["rows_out"] == len(reference.clean)
    assert manifest["rows_rejected"] == reference.reject_counts()
    reconciliation = outcome.checks["reconciliation"]["figures"]
    assert reconciliation["difference"] == 0
    assert set(reconciliation["by_source"]) == {"database", *sample_day.vendors}
    assert outcome.checks["volume"]["detail"].startswith("no history")
    # the run is in etl_runs and its manifest in staging
    assert loaded.scalar("SELECT status FROM etl_runs WHERE stage = 'validate' AND date = :d", d=DAY) == "success"
    stored = json.loads((loaded.staging / "manifests" / "validate-readings.json").read_text())
    assert stored["run_id"] == manifest["run_id"]


def test_nothing_loaded_for_the_day_exits_2(loaded):
    for table in ("biometric_readings", "daily_metrics", "etl_dead_letters", "etl_runs"):
        loaded.execute(f"DELETE FROM {table} WHERE date = :d", d=DAY)

    outcome = loaded.validate()

    assert outcome.exit_code == 2
    assert f"nothing is loaded for {DAY}" in outcome.error_line
    assert "biometrics-load readings" in outcome.error_line


def test_unmigrated_warehouse_exits_2(loaded, tmp_path):
    empty = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{empty}").connect().close()

    outcome = loaded.validate(env={"BIOMETRICS_WAREHOUSE_URL": f"sqlite:///{empty}"})

    assert outcome.exit_code == 2
    assert "has no table" in outcome.error_line and "biometrics-load migrate" in outcome.error_line


def test_missing_settings_exit_2(loaded):
    outcome = loaded.validate(env={"BIOMETRICS_DB_URL": ""})
    assert outcome.exit_code == 2
    assert "BIOMETRICS_DB_URL is not set" in outcome.error_line

    outcome = loaded.validate(env={"BIOMETRICS_WAREHOUSE_URL": ""})
    assert outcome.exit_code == 2
    assert "BIOMETRICS_WAREHOUSE_URL is not set" in outcome.error_line

    outcome = loaded.validate(env={"BIOMETRICS_VOLUME_MIN_RATIO": "3", "BIOMETRICS_VOLUME_MAX_RATIO": "2"})
    assert outcome.exit_code == 2
    assert "BIOMETRICS_VOLUME_MIN_RATIO" in outcome.error_line


@pytest.mark.parametrize("loaded", ["postgresql"], indirect=True)  # SQLite has no work_mem
def test_the_aggregates_memory_is_a_setting_and_a_bad_value_exits_2(loaded):
    # the server is asked for it: a value it refuses is a configuration error naming the setting
    outcome = loaded.validate(env={"BIOMETRICS_VALIDATE_WORK_MEM": "lots"})
    assert outcome.exit_code == 2
    assert outcome.error_line.startswith("biometrics-validate: error: BIOMETRICS_VALIDATE_WORK_MEM='lots' is not a "
                                         "PostgreSQL memory size")

    assert loaded.validate(env={"BIOMETRICS_VALIDATE_WORK_MEM": "64kB"}).exit_code == 0  # spills, same verdict


def test_missing_or_foreign_extract_manifest_exits_2(loaded):
    manifest_file = loaded.staging / "manifests" / "extract-readings.json"
    manifest = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps({**manifest, "date": "2026-01-04"}))

    outcome = loaded.validate()
    assert outcome.exit_code == 2
    assert "is for 2026-01-04, not 2026-01-05" in outcome.error_line

    manifest_file.unlink()
    outcome = loaded.validate()
    assert outcome.exit_code == 2
    assert "run biometrics-extract readings" in outcome.error_line


@pytest.mark.parametrize("details", [[1], {"rows_by_source": {"database": True}},
                                     {"rows_by_source": {"database": 10**30}}, {"rows_by_source": []}])
def test_an_extract_manifest_without_usable_counts_exits_2(loaded, details):
    manifest_file = loaded.staging / "manifests" / "extract-readings.json"
    manifest_file.write_text(json.dumps({**json.loads(manifest_file.read_text()), "details": details}))
    outcome = loaded.validate()
    assert outcome.exit_code == 2
    assert "has no details.rows_by_source counts" in outcome.error_line


def test_secrets_stay_out_of_the_output(loaded):
    outcome = loaded.validate()
    password = sa.engine.make_url(loaded.env["BIOMETRICS_WAREHOUSE_URL"]).password
    if password:
        assert password not in outcome.stderr
        assert password not in json.dumps(outcome.manifest)


@pytest.mark.parametrize("loaded", ["sqlite"], indirect=True)
def test_s3_staging(loaded, s3_env):
    # validate reads one thing from staging, the extract manifest, and leaves its own there
    s3_env.create_bucket("validate-staging")
    client = s3_env.client()
    client.put_object(Bucket="validate-staging", Key="run/manifests/extract-readings.json",
                      Body=(loaded.staging / "manifests" / "extract-readings.json").read_bytes())
    loaded.staging = "s3://validate-staging/run"

    outcome = loaded.validate()

    assert outcome.exit_code == 0, outcome.stderr
    stored = json.loads(client.get_object(Bucket="validate-staging",
                                          Key="run/manifests/validate-readings.json")["Body"].read())
    assert stored["run_id"] == outcome.manifest["run_id"]
