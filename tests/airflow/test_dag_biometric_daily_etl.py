"""The DAGs as Airflow 3.3 parses and renders them: imports, structure, schedule, retries, pinned
images, the data day and staging path in every command, and no secret in any command or rendered
field. (The end-to-end run is test_e2e_daily_etl.py.)"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.airflow

DAG_ID = "biometric_daily_etl"
CHAIN = ["extract", "transform", "load", "validate", "backup"]
SUBCOMMANDS = {"extract": "readings", "transform": "readings", "load": "readings", "validate": "readings",
               "backup": "create"}
RUN = "2026-01-06T02:00:00+00:00"   # the scheduled run of 2026-01-06 ...
DATA_DAY = "2026-01-05"              # ... processes the previous UTC day
LATER_RUN = "2026-02-01T02:00:00+00:00"        # a second date, rendered after the first
REPROCESS = RUN + "+data_day=2025-12-31"       # a run given the param data_day
TAG = "9.9.9-0123456789ab"
# Distinctive secrets in the Connections: none of them may show up anywhere Airflow renders or stores.
DB_PASSWORD = "db-Pa55/w0rd:with@specials"
WH_PASSWORD = "wh-S3cret%value"
AWS_SECRET = "aws-secret-ACCESS-key-value"
SECRETS = (DB_PASSWORD, WH_PASSWORD, AWS_SECRET, "db-Pa55%2Fw0rd%3Awith%40specials", "wh-S3cret%25value")


def _connections() -> dict[str, str]:
    return {
        "AIRFLOW_CONN_BIOMETRICS_DB": json.dumps({
            "conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "etl",
            "password": DB_PASSWORD, "schema": "app"}),
        "AIRFLOW_CONN_BIOMETRICS_WAREHOUSE": json.dumps({
            "conn_type": "postgres", "host": "127.0.0.1", "port": 5433, "login": "loader",
            "password": WH_PASSWORD, "schema": "warehouse"}),
        "AIRFLOW_CONN_BIOMETRICS_S3": json.dumps({
            "conn_type": "aws", "login": "AKIAEXAMPLE", "password": AWS_SECRET,
            "extra": {"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9000"}}),
    }


@pytest.fixture(scope="module")
def images_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "biometrics_images.json"
    path.write_text(json.dumps({"registry": "registry.test/biometrics", "version": TAG, "images": {
        stage: f"registry.test/biometrics/biometrics-{stage}:{TAG}" for stage in CHAIN}}))
    return path


@pytest.fixture(scope="module")
def parsed(airflow, images_file, tmp_path_factory):
    """dags/ parsed and rendered with the Variables' defaults (no Variable set)."""
    out = tmp_path_factory.mktemp("probe") / "defaults.json"
    return airflow.probe(out, [RUN, LATER_RUN, REPROCESS],
                         {"BIOMETRICS_IMAGES_FILE": str(images_file), **_connections()})


@pytest.fixture(scope="module")
def parsed_with_variables(airflow, images_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "variables.json"
    return airflow.probe(out, [RUN], {
        "BIOMETRICS_IMAGES_FILE": str(images_file), **_connections(),
        "AIRFLOW_VAR_ETL_STAGING_PATH": " s3://other-bucket/etl/staging/ ",  # blanks around, as pasted
        "AIRFLOW_VAR_BATCH_SIZE": "2500 ",
        "AIRFLOW_VAR_STAGE_SETTINGS": '{"BIOMETRICS_MEMORY_LIMIT": "1GB", "BIOMETRICS_THREADS": 2}',
        "BIOMETRICS_DOCKER_NETWORK": "host", "BIOMETRICS_DOCKER_AUTO_REMOVE": "force",
        "BIOMETRICS_DOCKER_URL": "tcp://127.0.0.1:2375"})


def _tasks(parsed):
    return parsed["dags"][DAG_ID]["tasks"]


def test_every_dag_imports_without_errors(parsed):
    assert parsed["import_errors"] == {}
    assert DAG_ID in parsed["dags"]


def test_schedule_timezone_catchup_tags_owner(parsed):
    dag = parsed["dags"][DAG_ID]
    assert dag["timetable_expression"] == "0 2 * * *"
    assert dag["timetable"] == "CronTriggerTimetable"  # logical date = the 02:00 trigger time
    assert dag["timezone"] == "UTC"
    assert dag["start_date"].endswith("+00:00")
    assert dag["catchup"] is False
    assert {"biometrics", "etl"} <= set(dag["tags"])
    assert dag["owner"] == "biometrics"
    assert dag["max_active_runs"] == 1


@pytest.mark.parametrize("data_intervals", ["False", "True"])
def test_the_first_scheduled_run_processes_the_previous_day_whatever_the_cron_setting(
        airflow, images_file, tmp_path_factory, data_intervals):
    """With [scheduler] create_cron_data_intervals on, a cron string had become a data-interval
    timetable: the run at 2026-01-06 02:00 had the logical date 2026-01-05 02:00 and processed 2026-01-04."""
    out = tmp_path_factory.mktemp("probe") / f"cron-{data_intervals}.json"
    parsed = airflow.probe(out, [RUN], {"BIOMETRICS_IMAGES_FILE": str(images_file), **_connections(),
                                        "AIRFLOW__SCHEDULER__CREATE_CRON_DATA_INTERVALS": data_intervals})
    first = parsed["dags"][DAG_ID]["first_scheduled_run"]
    assert first["run_after"].startswith("2026-01-06T02:00:00") and first["data_day"] == DATA_DAY, first


def test_retries_with_exponential_backoff_capped_at_an_hour(parsed):
    for task_id, task in _tasks(parsed).items():
        assert task["owner"] == "biometrics", task_id
        assert task["retries"] == 3, task_id
        assert task["retry_exponential_backoff"] > 1, task_id  # a multiplier in Airflow 3 (True would be 1)
        assert task["max_retry_delay"] == 3600, task_id


def test_the_waits_airflow_computes_before_each_retry(parsed):
    """2 minutes doubling, each with Airflow's jitter: the n-th wait in [2^n, 2^(n+1)) minutes."""
    waits = parsed["retry_minutes"]
    assert {name.split(".", 1)[1] for name in waits if name.startswith(DAG_ID + ".")} == set(CHAIN)
    for name, runs in waits.items():
        for minutes in runs:
            for n, wait in enumerate(minutes, start=1):
                assert 2 ** n <= wait < 2 ** (n + 1), (name, minutes)


def test_the_chain(parsed):
    tasks = _tasks(parsed)
    assert set(tasks) == set(CHAIN)
    for before, after in zip(CHAIN, CHAIN[1:]):
        assert tasks[before]["downstream"] == [after]
        assert tasks[after]["upstream"] == [before]
    assert tasks["extract"]["upstream"] == [] and tasks["backup"]["downstream"] == []


def test_each_task_is_a_docker_operator_made_by_the_factory(parsed):
    for stage, task in _tasks(parsed).items():
        assert task["is_docker_operator"] and task["class"] == "StageOperator", stage
        assert task["command"][0] == SUBCOMMANDS[stage]
        assert task["mount_tmp_dir"] is False
        assert task["do_xcom_push"] is True and task["xcom_all"] is False and task["retrieve_output"] is False
        assert task["force_pull"] is False
        # deployment defaults: the compose network and the local engine; failed containers kept
        assert task["network_mode"] == "biometrics"
        assert task["docker_url"] == "unix://var/run/docker.sock"
        assert task["remove"] == "success"


def test_engine_settings_are_configurable(parsed_with_variables):
    for stage, task in _tasks(parsed_with_variables).items():
        assert task["network_mode"] == "host", stage
        assert task["docker_url"] == "tcp://127.0.0.1:2375", stage
        assert task["remove"] == "force", stage


def test_images_are_pinned(parsed, images_file):
    pinned = json.loads(images_file.read_text())["images"]
    for stage, task in _tasks(parsed).items():
        assert task["image"] == pinned[stage]
        assert "{{" not in task["image"]  # no Variable or template can swap the image at run time
        assert not task["image"].endswith(":latest")
        assert task["rendered"][RUN]["image"] == pinned[stage]


def test_a_run_at_2026_01_06_0200_utc_processes_2026_01_05(parsed):
    for stage, task in _tasks(parsed).items():
        command = task["rendered"][RUN]["command"]
        assert command[command.index("--date") + 1] == DATA_DAY, stage


def test_each_date_renders_its_own_day(parsed):
    for stage, task in _tasks(parsed).items():
        for run, day in ((RUN, DATA_DAY), (LATER_RUN, "2026-01-31"), (REPROCESS, "2025-12-31")):
            command = task["rendered"][run]["command"]
            assert command[command.index("--date") + 1] == day, (stage, run)
            assert command[command.index("--staging-path") + 1].endswith(f"/{DAG_ID}/{day}"), (stage, run)


def test_the_param_data_day(parsed):
    assert parsed["dags"][DAG_ID]["params"] == {"data_day": None}
    outcomes = parsed["data_day_param"]
    assert outcomes["None"] == outcomes["''"] == {"value": "2026-01-05"}  # not given: the day before
    assert outcomes["'2025-12-31'"] == outcomes["' 2025-12-31 '"] == {"value": "2025-12-31"}
    for wrong in ("'2025-13-01'", "'20251231'", "5"):
        assert outcomes[wrong]["error"].startswith("ValueError: param data_day"), wrong
        assert "YYYY-MM-DD" in outcomes[wrong]["error"]


def test_the_param_data_day_is_checked_when_a_run_is_triggered(parsed):
    schema = parsed["data_day_schema"]
    assert {k: schema[k] for k in ("None", "''", "'2025-12-31'")} == dict.fromkeys(("None", "''", "'2025-12-31'"),
                                                                                    "accepted")
    for impossible in ("'2026-02-30'", "'2025-13-01'", "'0000-01-01'", "'20251231'", "' 2025-12-31'", "5"):
        assert schema[impossible] == "ParamValidationError", impossible


def test_staging_locations_the_containers_can_share(parsed):
    outcomes = parsed["staging_location"]
    assert outcomes["None"] == outcomes["''"] == outcomes["'  '"] == {"value": "s3://default/x"}
    assert outcomes["' s3://bucket/staging/ '"] == {"value": "s3://bucket/staging"}
    assert outcomes["'file:///srv/staging/'"] == {"value": "file:///srv/staging"}
    assert outcomes["'file://localhost/srv/st'"] == {"value": "file:///srv/st"}
    # a bare path would be written inside a container that is then removed; no bucket, no folder
    for refused in ("'s3://'", "'s3:/bucket'", "'file://host/x'", "'/srv/staging'", "'relative/x'", "'file:///'"):
        error = outcomes[refused]["error"]
        assert error.startswith("ValueError: Variable etl_staging_path") and "s3://bucket/prefix" in error, refused
    for refused in ("'file:///a?b=1'", "'s3://bucket/team#7'"):
        assert "cannot hold a raw '?' or '#'" in outcomes[refused]["error"], refused
    # bind-mounted writable into every container: not the host's own folders
    for refused in ("'file:///etc'", "'file://localhost/proc/1'", "'file:///var/run'", "'file:///var/lib'"):
        assert "is or holds a system folder of the Docker host" in outcomes[refused]["error"], refused
    for refused in ("'file:///srv/%2e%2e/etc'", "'file:////etc'", "'file:///%2Fetc'", "'file:///var//lib/docker'"):
        assert "without '.', '..' or '//'" in outcomes[refused]["error"], refused
    assert outcomes["'file:///var/lib/biometrics/staging'"] == {"value": "file:///var/lib/biometrics/staging"}


def test_a_broken_images_file_is_named_in_one_line(parsed):
    outcomes = parsed["load_images"]
    assert outcomes["pinned"]["value"]["load"] == "r/load:1.0"
    for broken, says in {"empty": "is not a readable JSON file", "not json": "is not a readable JSON file",
                         "a list": 'has no "images" object', "no images": 'has no "images" object',
                         "a stage missing": "names no image for transform, load, validate, backup",
                         "a null image": "is not an image reference", "a trailing space": "is not pinned",
                         "latest": "is not pinned"}.items():
        error = outcomes[broken]["error"]
        assert error.startswith("ValueError: ") and f"images-{broken.replace(' ', '-')}.json" in error, broken
        assert says in error and "\n" not in error, broken


def test_the_data_day_of_other_run_shapes(parsed):
    assert parsed["data_day"] == {
        "scheduled 2026-01-06T02:00Z": "2026-01-05",
        # Airflow 3 manual runs may have no logical date: the day before they were triggered
        "manual, no logical date, 2026-03-01T00:10Z": "2026-02-28",
        # the UTC day, whatever the offset the date was given in (2026-01-05T20:30Z)
        "logical 2026-01-06T01:30+05:00": "2026-01-04",
        "logical 2026-01-01T00:00Z": "2025-12-31",
    }


def test_every_command_has_the_date_and_the_staging_path(parsed, parsed_with_variables):
    for result, root, batch in ((parsed, "s3://biometrics-etl/staging", "10000"),
                                (parsed_with_variables, "s3://other-bucket/etl/staging", "2500")):
        for stage, task in _tasks(result).items():
            rendered = task["rendered"][RUN]
            command = rendered["command"]
            assert command[0] == SUBCOMMANDS[stage]
            assert command[command.index("--date") + 1] == DATA_DAY
            assert command[command.index("--staging-path") + 1] == f"{root}/{DAG_ID}/{DATA_DAY}", stage
            assert rendered["environment"]["BIOMETRICS_BATCH_SIZE"] == batch


def test_the_variable_stage_settings_reaches_every_stage(parsed, parsed_with_variables):
    for stage, task in _tasks(parsed_with_variables).items():
        environment = task["rendered"][RUN]["environment"]
        assert environment["BIOMETRICS_MEMORY_LIMIT"] == "1GB" and environment["BIOMETRICS_THREADS"] == "2", stage
        assert environment["BIOMETRICS_BATCH_SIZE"] == "2500"
    for task in _tasks(parsed).values():
        assert "BIOMETRICS_MEMORY_LIMIT" not in task["rendered"][RUN]["environment"]
    outcomes = parsed["stage_settings"]
    assert outcomes["None"] == outcomes["' '"] == {"value": {}}
    assert outcomes[repr('{"BIOMETRICS_MEMORY_LIMIT": " 1GB ", "BIOMETRICS_THREADS": 2}')] == \
        {"value": {"BIOMETRICS_MEMORY_LIMIT": "1GB", "BIOMETRICS_THREADS": "2"}}
    assert "is not JSON" in outcomes["'{'"]["error"] and "must be a JSON object" in outcomes["'[]'"]["error"]
    for name in ("BIOMETRICS_DB_URL", "BIOMETRICS_BATCH_SIZE"):
        error = outcomes[repr('{"%s": %s}' % (name, '"postgresql://x"' if name.endswith("URL") else 5))]["error"]
        assert f"{name} cannot be set there" in error and "postgresql://x" not in error
    assert "must be text or a number" in outcomes[repr('{"BIOMETRICS_THREADS": true}')]["error"]
    assert "must be text or a number" in outcomes[repr('{"BIOMETRICS_THREADS": [1]}')]["error"]
    # the value is not repeated into the task log (a secret pasted in the wrong place)
    assert outcomes[repr('{"BIOMETRICS_THREADS": {"a": "SECRETY"}}')]["error"].endswith(
        "BIOMETRICS_THREADS must be text or a number, not an object")


def test_no_secret_in_any_command_or_rendered_field(parsed, parsed_with_variables):
    for result in (parsed, parsed_with_variables):
        for stage, task in _tasks(result).items():
            assert "private_environment" not in task["template_fields"]
            assert task["private_environment_at_parse"] == {}, "secrets are resolved when the task runs"
            visible = json.dumps({k: v for k, v in task.items() if k != "connections"})
            for secret in SECRETS:
                assert secret not in visible, (stage, secret)
            for name in ("BIOMETRICS_DB_URL", "BIOMETRICS_WAREHOUSE_URL", "AWS_SECRET_ACCESS_KEY"):
                assert name not in json.dumps(task["environment"]) + json.dumps(task["rendered"])
            assert "postgres" not in json.dumps(task["command"]) + json.dumps(task["rendered"][RUN]["command"])


def test_each_stage_gets_only_the_connections_it_needs(parsed):
    tasks = _tasks(parsed)
    assert tasks["extract"]["connections"] == {"BIOMETRICS_DB_URL": "biometrics_db"}
    assert tasks["transform"]["connections"] == {}
    assert tasks["load"]["connections"] == {"BIOMETRICS_WAREHOUSE_URL": "biometrics_warehouse"}
    assert tasks["validate"]["connections"] == {"BIOMETRICS_DB_URL": "biometrics_db",
                                                "BIOMETRICS_WAREHOUSE_URL": "biometrics_warehouse"}
    assert tasks["backup"]["connections"] == {"BIOMETRICS_WAREHOUSE_URL": "biometrics_warehouse"}


def test_connections_become_sqlalchemy_urls_and_aws_variables(parsed):
    conns = parsed["connections"]
    assert conns["tricky"] == {"drivername": "postgresql+psycopg2", "username": "etl@corp",
                               "password": "p@ss:w/rd%?#", "host": "db.internal", "port": 5433,
                               "database": "app", "query": {"sslmode": "require"}}
    assert conns["from_uri"] == "postgresql+psycopg2://u:pw@127.0.0.1:5432/db"  # not Airflow's postgres://
    assert conns["aws"] == {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "secret",
                            "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}
    assert conns["aws_temporary"] == {"AWS_ACCESS_KEY_ID": "ASIA", "AWS_SECRET_ACCESS_KEY": "secret",
                                      "AWS_SESSION_TOKEN": "token"}


def test_connection_shapes_that_airflow_allows(parsed):
    conns = parsed["connections"]
    # Airflow keeps an IPv6 host without its brackets
    assert conns["ipv6"] == {"url": "postgresql+psycopg2://u:pw@[::1]:5432/app", "host": "::1"}
    # libpq's switches take 1/0; the PostgresHook's own extras (cursor, iam) and nested values are not libpq's
    assert conns["extras"] == "postgresql+psycopg2://u@127.0.0.1/db?keepalives=1&sslmode=prefer"
    assert conns["password_only"] == "postgresql+psycopg2://:pw@127.0.0.1/db"
    assert conns["scheme"] == "postgresql+psycopg://127.0.0.1/db"  # the hook's sqlalchemy_scheme is honoured
    assert conns["sqlite"] == {"url": "sqlite:////data/app.db", "database": "/data/app.db"}
