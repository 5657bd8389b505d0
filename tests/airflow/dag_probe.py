"""Load dags/ with Airflow and describe it as JSON: run by the Airflow venv's Python for the tests.

usage: python dag_probe.py OUT.json LOGICAL_DATE [LOGICAL_DATE...]

The tests run in the repository venv, which has no Airflow (the two must not share dependencies);
this script runs in .venv-airflow with AIRFLOW_HOME (a migrated metadata database),
AIRFLOW__CORE__DAGS_FOLDER, Variables and Connections given by the caller's environment. It writes:
- import errors of every DAG file (DagBag, as the dag-processor parses them);
- each DAG's settings and each task's attributes, as parsed;
- each task's template fields rendered by Airflow itself for each logical date (what
  ``airflow tasks render`` does: the values Airflow stores and shows as "Rendered Template");
- the data day ``biometrics_stage.data_day`` gives for a few run shapes (manual runs without a
  logical date included).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import sys
from pathlib import Path
from types import SimpleNamespace


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def main(out: str, logical_dates: list[str]) -> None:
    from airflow.cli.commands.task_command import _get_template_context, _get_ti
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.providers.docker.operators.docker import DockerOperator
    from airflow.utils.cli import get_bagged_dag, get_db_dag

    dags_folder = Path(conf.get("core", "dags_folder"))
    bag = BundleDagBag(dag_folder=dags_folder, bundle_path=dags_folder, bundle_name="dags-folder")
    result: dict = {"import_errors": jsonable(bag.import_errors), "dags": {}}
    for dag_id, dag in bag.dags.items():
        tasks = {}
        for task in dag.tasks:
            tasks[task.task_id] = {
                "class": type(task).__name__,
                "is_docker_operator": isinstance(task, DockerOperator),
                "upstream": jsonable(task.upstream_task_ids),
                "downstream": jsonable(task.downstream_task_ids),
                "owner": task.owner,
                "retries": task.retries,
                "retry_delay": jsonable(task.retry_delay),
                "retry_exponential_backoff": task.retry_exponential_backoff,
                "max_retry_delay": jsonable(task.max_retry_delay),
                "template_fields": list(task.template_fields),
                **{attr: jsonable(getattr(task, attr, None)) for attr in (
                    "image", "command", "environment", "network_mode", "docker_url", "auto_remove", "remove",
                    "mount_tmp_dir", "do_xcom_push", "xcom_all", "retrieve_output", "force_pull",
                    "connections", "s3_conn_id", "entrypoint", "api_version")},
                "private_environment_at_parse": jsonable(getattr(task, "_private_environment", None)),
                "rendered": {},
            }
        result["dags"][dag_id] = {
            "fileloc": dag.fileloc,
            "schedule": jsonable(dag.schedule),
            # the timetable the scheduler runs (the DAG's own is the Task SDK's definition of it)
            "timetable_expression": getattr(_scheduler_dag(dag).timetable, "_expression", None),
            "timetable": type(_scheduler_dag(dag).timetable).__name__,
            "timezone": str(dag.timezone.name if hasattr(dag.timezone, "name") else dag.timezone),
            "catchup": dag.catchup,
            "tags": jsonable(dag.tags),
            "owner": dag.owner,
            "start_date": jsonable(dag.start_date),
            "max_active_runs": dag.max_active_runs,
            "params": jsonable({name: dag.params[name] for name in dag.params.keys()}),
            "default_args": jsonable(dag.default_args),
            "tasks": tasks,
        }

    # Rendering, as `airflow tasks render` does it (an in-memory run per logical date). Rendering
    # replaces a task's templates by their values, so each date renders a freshly parsed task.
    # A date followed by "+data_day=D" renders that run with the param data_day given.
    for dag_id in result["dags"]:
        sdk_dag = get_bagged_dag(None, dag_id)  # (also writes the DAG to the metadata database)
        scheduler_dag = get_db_dag(None, dag_id)
        for nth, run in enumerate(logical_dates):
            logical_date, _, param_day = run.partition("+data_day=")
            if nth:
                sdk_dag = get_bagged_dag(None, dag_id)
            for task_id in result["dags"][dag_id]["tasks"]:
                ti, _ = _get_ti(scheduler_dag.get_task(task_id), -1, logical_date_or_run_id=logical_date,
                                create_if_necessary="memory")
                task = sdk_dag.get_task(task_id)
                context = _get_template_context(ti, task)
                if param_day:
                    context["params"]["data_day"] = param_day
                task.render_template_fields(context)
                rendered = {attr: jsonable(getattr(context["task"], attr)) for attr in task.template_fields}
                result["dags"][dag_id]["tasks"][task_id]["rendered"][run] = rendered

    # The waits Airflow itself computes before each retry (TaskInstance.next_retry_datetime, as the
    # scheduler does), for a few runs: Airflow adds jitter to the exponential backoff.
    result["retry_minutes"] = _retry_minutes(bag)

    # The data day for run shapes a test cannot easily make a real run of.
    sys.path.insert(0, str(dags_folder))
    from biometrics_stage import _aws_env, data_day, load_images, sqlalchemy_url, stage_settings, staging_location

    utc = dt.timezone.utc
    shapes = {
        "scheduled 2026-01-06T02:00Z": SimpleNamespace(logical_date=dt.datetime(2026, 1, 6, 2, tzinfo=utc),
                                                       run_after=dt.datetime(2026, 1, 6, 2, tzinfo=utc)),
        "manual, no logical date, 2026-03-01T00:10Z": SimpleNamespace(
            logical_date=None, run_after=dt.datetime(2026, 3, 1, 0, 10, tzinfo=utc)),
        "logical 2026-01-06T01:30+05:00": SimpleNamespace(
            logical_date=dt.datetime(2026, 1, 6, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=5))),
            run_after=dt.datetime(2026, 1, 6, 2, tzinfo=utc)),
        "logical 2026-01-01T00:00Z": SimpleNamespace(logical_date=dt.datetime(2026, 1, 1, tzinfo=utc),
                                                     run_after=dt.datetime(2026, 1, 1, tzinfo=utc)),
    }
    result["data_day"] = {name: data_day(run) for name, run in shapes.items()}
    # the first run the DAG's own timetable schedules from 2026-01-06 00:00Z, as the scheduler makes it
    from airflow.timetables.base import TimeRestriction
    for dag_id in result["dags"]:
        info = _scheduler_dag(bag.dags[dag_id]).timetable.next_dagrun_info(
            last_automated_data_interval=None,
            restriction=TimeRestriction(earliest=dt.datetime(2026, 1, 6, tzinfo=utc), latest=None, catchup=True))
        run = SimpleNamespace(logical_date=info.logical_date, run_after=info.run_after)
        result["dags"][dag_id]["first_scheduled_run"] = {
            "run_after": jsonable(info.run_after), "logical_date": jsonable(info.logical_date), "data_day": data_day(run)}
    scheduled = shapes["scheduled 2026-01-06T02:00Z"]
    result["data_day_param"] = {repr(day): _outcome(data_day, scheduled, {"data_day": day})
                                for day in (None, "", "2025-12-31", " 2025-12-31 ", "2025-13-01", "20251231", 5)}
    # what Airflow's own validation of a triggered run's conf says of the param (ParamsDict.validate)
    schema = {}
    for conf_day in (None, "", "2025-12-31", "2026-02-30", "2025-13-01", "0000-01-01", "20251231", " 2025-12-31", 5):
        params = copy.deepcopy(bag.dags["biometric_daily_etl"].params)
        try:
            params.update({"data_day": conf_day})  # as a triggered run's conf is merged, then checked
            params.validate()
            schema[repr(conf_day)] = "accepted"
        except Exception as exc:  # noqa: BLE001 - its kind is the finding
            schema[repr(conf_day)] = type(exc).__name__
    result["data_day_schema"] = schema
    result["staging_location"] = {repr(value): _outcome(staging_location, value, "etl_staging_path", "s3://default/x")
                                  for value in (None, "", "  ", " s3://bucket/staging/ ", "s3://", "s3:/bucket",
                                                "file:///srv/staging/", "file://localhost/srv/st", "file://host/x", "file:///etc",
                                                "file://localhost/proc/1", "file:///srv/%2e%2e/etc", "file:///var/run",
                                                "file:///var/lib/biometrics/staging", "file:////etc",
                                                "file:///%2Fetc", "file:///var/lib", "file:///var//lib/docker",
                                                "/srv/staging", "relative/x", "file:///", "file:///a?b=1", "s3://bucket/team#7")}
    result["stage_settings"] = {repr(value): _outcome(stage_settings, value) for value in (
        None, " ", '{"BIOMETRICS_MEMORY_LIMIT": " 1GB ", "BIOMETRICS_THREADS": 2}', "{", "[]",
        '{"BIOMETRICS_DB_URL": "postgresql://x"}', '{"BIOMETRICS_BATCH_SIZE": 5}', '{"BIOMETRICS_THREADS": true}',
        '{"BIOMETRICS_THREADS": [1]}', '{"BIOMETRICS_THREADS": {"a": "SECRETY"}}')}
    images = {}
    for name, content in {"empty": "", "not json": "{", "a list": "[]", "no images": '{"registry": "r"}',
                          "a stage missing": json.dumps({"images": {"extract": "r/e:1.0"}}),
                          "a null image": json.dumps({"images": {s: None for s in _STAGES}}),
                          "a trailing space": json.dumps({"images": {s: f"r/{s}:1.0 " for s in _STAGES}}),
                          "latest": json.dumps({"images": {s: f"r/{s}:latest" for s in _STAGES}}),
                          "pinned": json.dumps({"images": {s: f"r/{s}:1.0" for s in _STAGES}})}.items():
        path = Path(out).with_name(f"images-{name.replace(' ', '-')}.json")
        path.write_text(content)
        images[name] = _outcome(load_images, path)
    result["load_images"] = images
    # Connections -> what the containers get (the real Connection class, SQLAlchemy's URL parser).
    from airflow.sdk import Connection
    from sqlalchemy.engine import make_url

    tricky = Connection(conn_id="probe_db", conn_type="postgres", host="db.internal", port=5433,
                        login="etl@corp", password="p@ss:w/rd%?#", schema="app",
                        extra=json.dumps({"sslmode": "require"}))
    parsed_url = make_url(sqlalchemy_url(tricky))
    from_uri = Connection.from_uri("postgres://u:pw@127.0.0.1:5432/db", conn_id="probe_uri")
    aws = Connection(conn_id="probe_s3", conn_type="aws", login="AKIA", password="secret",
                     extra=json.dumps({"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9000"}))
    temporary = Connection(conn_id="probe_s3_sts", conn_type="aws", login="ASIA", password="secret",
                           extra=json.dumps({"aws_session_token": "token"}))
    ipv6 = Connection.from_uri("postgres://u:pw@[::1]:5432/app", conn_id="probe_ipv6")
    extras = Connection(conn_id="probe_extras", conn_type="postgres", host="127.0.0.1", login="u", schema="db",
                        extra=json.dumps({"keepalives": True, "sslmode": "prefer", "cursor": "dictcursor",
                                          "iam": False, "options": {"nested": 1}}))
    password_only = Connection(conn_id="probe_pw", conn_type="postgres", host="127.0.0.1", password="pw", schema="db")
    scheme = Connection(conn_id="probe_scheme", conn_type="postgres", host="127.0.0.1", schema="db",
                        extra=json.dumps({"sqlalchemy_scheme": "postgresql+psycopg"}))
    sqlite = Connection(conn_id="probe_sqlite", conn_type="sqlite", host="/data/app.db")
    result["connections"] = {
        "tricky": {"drivername": parsed_url.drivername, "username": parsed_url.username,
                   "password": parsed_url.password, "host": parsed_url.host, "port": parsed_url.port,
                   "database": parsed_url.database, "query": dict(parsed_url.query)},
        "from_uri": sqlalchemy_url(from_uri),
        "aws": _aws_env(aws),
        "aws_temporary": _aws_env(temporary),
        "ipv6": {"url": sqlalchemy_url(ipv6), "host": make_url(sqlalchemy_url(ipv6)).host},
        "extras": sqlalchemy_url(extras),
        "password_only": sqlalchemy_url(password_only),
        "scheme": sqlalchemy_url(scheme),
        "sqlite": {"url": sqlalchemy_url(sqlite), "database": make_url(sqlalchemy_url(sqlite)).database},
    }
    Path(out).write_text(json.dumps(result, indent=2, sort_keys=True))


_STAGES = ("extract", "transform", "load", "validate", "backup")


def _scheduler_dag(dag):
    """The DAG as the scheduler has it: serialized and read back."""
    from airflow.serialization.serialized_objects import DagSerialization
    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def _retry_minutes(bag) -> dict[str, list[list[float]]]:
    import pendulum
    from airflow.models.taskinstance import TaskInstance

    waits: dict[str, list[list[float]]] = {}
    for dag_id, dag in bag.dags.items():
        for task in _scheduler_dag(dag).tasks:
            for day in range(1, 8):
                logical = pendulum.datetime(2026, 1, day, 2, tz="UTC")
                ended = logical.add(minutes=10)
                minutes = []
                for try_number in (1, 2, 3):
                    ti = TaskInstance(task, run_id=f"r{day}", dag_version_id=None)
                    ti.logical_date, ti.try_number, ti.end_date = logical, try_number, ended
                    minutes.append((ti.next_retry_datetime() - ended).total_seconds() / 60)
                waits.setdefault(f"{dag_id}.{task.task_id}", []).append(minutes)
    return waits


def _outcome(function, *args):
    """What a call returns, or the one-line error it raises."""
    try:
        return {"value": function(*args)}
    except (ValueError, FileNotFoundError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
