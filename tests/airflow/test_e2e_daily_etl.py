"""End to end: `airflow dags test biometric_daily_etl` runs the five stage images with real
DockerOperator tasks against a real PostgreSQL (source and warehouse) and a real S3 endpoint. The
warehouse is checked against an independent computation from the source rows, a second run of the
same date must leave identical contents, and a third, staged on a folder of the Docker host
(file://), must load the same day again."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest
import sqlalchemy as sa
from biometrics_testkit import sample
from biometrics_testkit.compare import assert_warehouse_matches, source_records
from biometrics_testkit.harness import snapshot

pytestmark = [pytest.mark.airflow, pytest.mark.docker, pytest.mark.postgres, pytest.mark.s3]

DAG_ID = "biometric_daily_etl"
CHAIN = ["extract", "transform", "load", "validate", "backup"]
SUBCOMMANDS = {"extract": "readings", "transform": "readings", "load": "readings", "validate": "readings",
               "backup": "create"}
LOGICAL_DATE = "2026-01-06T02:00:00+00:00"   # the scheduled run of 2026-01-06 at 02:00 UTC
DAY = dt.date(2026, 1, 5)                     # processes the previous UTC day
BUCKET = "biometrics-e2e"


def _connection(url: str) -> str:
    """An Airflow connection (JSON form) for a SQLAlchemy URL of the test server."""
    u = sa.engine.make_url(url)
    return json.dumps({"conn_type": "postgres", "host": u.host, "port": u.port, "login": u.username,
                       "password": u.password, "schema": u.database})


def _dag_run(airflow, env) -> dict:
    """One `airflow dags test` run; what Airflow recorded about it."""
    proc = airflow.run("dags", "test", DAG_ID, LOGICAL_DATE, extra_env=env, timeout=1200, check=False)
    output = proc.stdout + proc.stderr
    runs = airflow.query("SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC", DAG_ID)
    assert proc.returncode == 0 and runs and runs[0]["state"] == "success", output[-8000:]
    run_id = runs[0]["run_id"]
    states = {r["task_id"]: r["state"] for r in airflow.query(
        "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", DAG_ID, run_id)}
    order = [r["task_id"] for r in airflow.query(
        "SELECT task_id FROM task_instance WHERE dag_id = ? AND run_id = ? ORDER BY start_date", DAG_ID, run_id)]
    xcoms = {r["task_id"]: r["value"] for r in airflow.query(
        "SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value'",
        DAG_ID, run_id)}
    rendered = {r["task_id"]: r["rendered_fields"] for r in airflow.query(
        "SELECT task_id, rendered_fields FROM rendered_task_instance_fields WHERE dag_id = ? AND run_id = ?",
        DAG_ID, run_id)}
    return {"run_id": run_id, "states": states, "order": order, "output": output, "rendered": rendered,
            "xcoms": {k: _xcom_value(v) for k, v in xcoms.items()}}


def _xcom_value(raw):
    value = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return json.loads(value) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def e2e(airflow, stage_images, postgres_server, s3_endpoint, tmp_path_factory):
    source_url = postgres_server.create_database("e2e_source")
    warehouse_url = postgres_server.create_database("e2e_warehouse")
    s3_endpoint.create_bucket(BUCKET)
    generated = sample.generate_day(DAY, users=300, readings_per_user=20, vendor_rows=200)
    sample.write_source(source_url, generated.database)
    inbox = tmp_path_factory.mktemp("inbox")
    s3 = s3_endpoint.client()
    staging = f"staging/{DAG_ID}/{DAY}"
    for path in sample.write_vendor_files(inbox, DAY, generated.vendors):
        s3.upload_file(str(path), BUCKET, f"{staging}/inbox/{path.relative_to(inbox).as_posix()}")

    env = {
        "AIRFLOW_CONN_BIOMETRICS_DB": _connection(source_url),
        "AIRFLOW_CONN_BIOMETRICS_WAREHOUSE": _connection(warehouse_url),
        "AIRFLOW_CONN_BIOMETRICS_S3": json.dumps({
            "conn_type": "aws", "login": s3_endpoint.access_key, "password": s3_endpoint.secret_key,
            "extra": {"region_name": s3_endpoint.region, "endpoint_url": s3_endpoint.url}}),
        "AIRFLOW_VAR_ETL_STAGING_PATH": f"s3://{BUCKET}/staging",
        "AIRFLOW_VAR_BATCH_SIZE": "1000",
        "BIOMETRICS_DOCKER_NETWORK": "host",   # the test servers listen on 127.0.0.1
        "BIOMETRICS_DOCKER_AUTO_REMOVE": "success",
    }
    first = _dag_run(airflow, env)
    first_snapshot = snapshot(warehouse_url, DAY)
    second = _dag_run(airflow, env)
    second_snapshot = snapshot(warehouse_url, DAY)
    # A third run stages on a folder of the Docker host instead (file://): the DAG bind-mounts it into
    # every stage's container, so each stage reads what the one before wrote. (Its vendor files are
    # new files: their modification times, the records' ingested_at, differ from the S3 objects'.)
    folder = tmp_path_factory.mktemp("file-staging")
    sample.write_vendor_files(folder / DAG_ID / DAY.isoformat() / "inbox", DAY, generated.vendors)
    subprocess.run(["chown", "-R", "999:999", str(folder)], check=True)  # the images' user
    on_file = _dag_run(airflow, {**env, "AIRFLOW_VAR_ETL_STAGING_PATH": f"file://{folder}/"})
    records_after_file_run = source_records(source_url, DAY, generated.vendors)
    assert_warehouse_matches(warehouse_url, DAY, records_after_file_run)
    return {"first": first, "second": second, "on_file": on_file, "snapshots": (first_snapshot, second_snapshot),
            "source_url": source_url, "warehouse_url": warehouse_url, "generated": generated,
            "secrets": (postgres_server.password, s3_endpoint.secret_key), "s3": s3, "staging": staging,
            "file_staging": folder / DAG_ID / DAY.isoformat()}


def test_every_stage_ran_as_a_container_in_order(e2e):
    for run in (e2e["first"], e2e["second"]):
        assert run["states"] == {task: "success" for task in CHAIN}
        assert run["order"] == CHAIN


def test_each_stage_manifest_is_its_xcom(e2e):
    xcoms = e2e["first"]["xcoms"]
    assert set(xcoms) == set(CHAIN)
    for stage in CHAIN:
        manifest = xcoms[stage]
        assert isinstance(manifest, dict), manifest
        assert manifest["stage"] == stage and manifest["status"] == "success"
    assert xcoms["extract"]["rows_out"] == xcoms["transform"]["rows_in"]
    assert xcoms["load"]["rows_out"] == xcoms["transform"]["rows_out"]
    assert all(check["passed"] for check in xcoms["validate"]["details"]["checks"])


def test_the_run_of_2026_01_06_processed_2026_01_05(e2e):
    for stage, manifest in e2e["first"]["xcoms"].items():
        assert manifest["date"] == DAY.isoformat(), stage
    for stage, fields in e2e["first"]["rendered"].items():
        command = json.loads(fields)["command"] if isinstance(fields, str) else fields["command"]
        assert command[command.index("--date") + 1] == DAY.isoformat(), stage
    engine = sa.create_engine(e2e["warehouse_url"])
    with engine.connect() as conn:
        for table in ("biometric_readings", "daily_metrics"):
            days = conn.execute(sa.text(f"SELECT DISTINCT date FROM {table}")).scalars().all()
            assert days == [DAY], table
    engine.dispose()
    staged = e2e["s3"].list_objects_v2(Bucket=BUCKET, Prefix=f"{e2e['staging']}/")
    assert staged.get("KeyCount", 0) > 0


def test_the_warehouse_matches_an_independent_computation(e2e):
    records = source_records(e2e["source_url"], DAY, e2e["generated"].vendors)
    assert_warehouse_matches(e2e["warehouse_url"], DAY, records)


def test_a_second_run_of_the_same_date_leaves_identical_contents(e2e):
    # a second, separate run: a new dag run, and every stage ran again (new stage run ids)
    assert e2e["second"]["run_id"] != e2e["first"]["run_id"]
    for stage in CHAIN:
        assert e2e["second"]["xcoms"][stage]["run_id"] != e2e["first"]["xcoms"][stage]["run_id"], stage
        assert e2e["second"]["xcoms"][stage]["date"] == DAY.isoformat()
    first, second = e2e["snapshots"]
    assert first == second
    assert all(count > 0 for count, _digest in first.values()), first


def test_a_file_staging_folder_is_shared_by_the_stages(e2e):
    """The third run, staged on file:// (the fixture checked the warehouse after it too)."""
    assert e2e["on_file"]["states"] == {task: "success" for task in CHAIN}
    xcoms = e2e["on_file"]["xcoms"]
    assert xcoms["extract"]["rows_out"] == e2e["first"]["xcoms"]["extract"]["rows_out"]
    assert set(xcoms["extract"]["details"]["rows_by_source"]) == set(e2e["first"]["xcoms"]["extract"]["details"]
                                                                     ["rows_by_source"])  # the vendors' files too
    folder = e2e["file_staging"]
    for stage, command in SUBCOMMANDS.items():  # each container wrote into the host's folder
        assert (folder / "manifests" / f"{stage}-{command}.json").is_file(), stage
    assert any((folder / "transform" / "readings").iterdir()) and any((folder / "backups").rglob("*.json*"))


def test_the_backup_was_written_to_staging(e2e):
    manifest = e2e["first"]["xcoms"]["backup"]
    assert manifest["outputs"], manifest
    listed = e2e["s3"].list_objects_v2(Bucket=BUCKET, Prefix=f"{e2e['staging']}/backups/")
    assert listed.get("KeyCount", 0) > 0


def test_no_secret_in_rendered_fields_xcoms_or_logs(e2e, airflow):
    for run in (e2e["first"], e2e["second"], e2e["on_file"]):
        stored = json.dumps(run["rendered"]) + json.dumps(run["xcoms"])
        logs = "".join(p.read_text(errors="replace") for p in (airflow.home / "logs").rglob("*") if p.is_file())
        for secret in e2e["secrets"]:
            assert secret not in stored
            assert secret not in run["output"]
            assert secret not in logs


def test_finished_containers_were_removed(e2e):
    left = subprocess.run(["docker", "ps", "-a", "-q", "--filter", "label=org.biometrics.stage"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert left == []
