"""The one place that knows how a BIOMETRICS ETL stage runs in Airflow: a ``DockerOperator`` task.

``stage_task(stage, subcommand, extra_args)`` builds the task that runs the stage image::

    biometrics-<stage> <subcommand> --date <data day> --staging-path <root>/<dag_id>/<data day> <extra_args>

- **Image**: pinned, from ``biometrics_images.json`` next to this file (written by ``make build``;
  ``BIOMETRICS_IMAGES_FILE`` points elsewhere). A ``:latest`` or untagged image is refused.
- **Data day**: the UTC day before the run's logical date (a manual run without a logical date:
  the day before it was triggered); see ``data_day``. A run at 2026-01-06T02:00Z processes 2026-01-05.
- **Variables** (read when the task runs, never while the DAG is parsed): ``etl_staging_path``
  (default ``s3://biometrics-etl/staging``), ``batch_size`` (default ``10000``) and, for extract,
  ``vendor_inbox_path`` (default empty: the stage's own default, ``<staging path>/inbox``).
- **Connections** reach the container only through ``private_environment``, filled in ``execute``:
  never in the command, never in a templated (rendered, stored, shown) field. ``biometrics_db`` ->
  ``BIOMETRICS_DB_URL``, ``biometrics_warehouse`` -> ``BIOMETRICS_WAREHOUSE_URL`` (Airflow's
  ``postgres://`` becomes SQLAlchemy's ``postgresql+psycopg2://``); the optional ``biometrics_s3``
  (type aws: login/password = key id/secret, extra ``region_name``, ``endpoint_url``) -> ``AWS_*``.
- **Manifest**: the last line the stage prints on stdout (not stderr) is parsed as JSON and becomes
  the task's XCom (``return_value``).
- **Engine settings** (deployment, read at parse time from the environment of the dag-processor and
  the workers alike): ``BIOMETRICS_DOCKER_URL`` (default ``unix://var/run/docker.sock``),
  ``BIOMETRICS_DOCKER_NETWORK`` (default ``biometrics``, the compose network; ``host`` in tests),
  ``BIOMETRICS_DOCKER_AUTO_REMOVE`` (``never`` | ``success`` (default: keep failed containers for
  debugging) | ``force``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from airflow.providers.docker.operators.docker import DockerOperator

STAGES = ("extract", "transform", "load", "validate", "backup")
DEFAULT_STAGING_PATH = "s3://biometrics-etl/staging"
DEFAULT_BATCH_SIZE = "10000"

DB_CONN_ID = "biometrics_db"
WAREHOUSE_CONN_ID = "biometrics_warehouse"
S3_CONN_ID = "biometrics_s3"

# Which database each stage may reach (environment variable -> Airflow connection id): least privilege.
STAGE_CONNECTIONS: dict[str, dict[str, str]] = {
    "extract": {"BIOMETRICS_DB_URL": DB_CONN_ID},
    "transform": {},
    "load": {"BIOMETRICS_WAREHOUSE_URL": WAREHOUSE_CONN_ID},
    "validate": {"BIOMETRICS_DB_URL": DB_CONN_ID, "BIOMETRICS_WAREHOUSE_URL": WAREHOUSE_CONN_ID},
    "backup": {"BIOMETRICS_WAREHOUSE_URL": WAREHOUSE_CONN_ID},
}

AUTO_REMOVE_POLICIES = ("never", "success", "force")

IMAGES_FILE = Path(os.environ.get("BIOMETRICS_IMAGES_FILE") or Path(__file__).with_name("biometrics_images.json"))

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "biometrics",
    "retries": 3,
    "retry_delay": dt.timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,  # 2, 4, 8 min ... (a multiplier in Airflow 3; True would mean 1.0)
    "max_retry_delay": dt.timedelta(minutes=60),
    "execution_timeout": dt.timedelta(hours=3),
}

# Templates rendered when the task runs. `var.value.get` reads the Variable then, not at parse time.
STAGING_ROOT_TEMPLATE = "{{ var.value.get('etl_staging_path', '%s').rstrip('/') }}" % DEFAULT_STAGING_PATH
BATCH_SIZE_TEMPLATE = "{{ var.value.get('batch_size', '%s') }}" % DEFAULT_BATCH_SIZE
INBOX_PATH_TEMPLATE = "{{ var.value.get('vendor_inbox_path', '') }}"
DATA_DAY_TEMPLATE = "{{ biometrics_data_day }}"
STAGING_PATH_TEMPLATE = STAGING_ROOT_TEMPLATE + "/{{ dag.dag_id }}/" + DATA_DAY_TEMPLATE


def data_day(dag_run: Any) -> str:
    """The UTC day a run processes: the day before its logical date (or, without one, its run_after)."""
    moment = getattr(dag_run, "logical_date", None) or dag_run.run_after
    if moment.tzinfo is None:
        raise ValueError(f"naive run date {moment!r}: Airflow dates are timezone-aware")
    return (moment.astimezone(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()


def sqlalchemy_url(conn: Any) -> str:
    """A SQLAlchemy URL for an Airflow connection (``postgres`` -> ``postgresql+psycopg2``)."""
    conn_type = (conn.conn_type or "").lower()
    if conn_type in ("postgres", "postgresql", "postgresql+psycopg2"):
        scheme = "postgresql+psycopg2"
    elif conn_type:
        scheme = conn_type.replace("_", "+", 1) if conn_type.startswith("postgresql_") else conn_type
    else:
        raise ValueError(f"connection {conn.conn_id!r} has no type")
    auth = ""
    if conn.login:
        auth = quote(conn.login, safe="")
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        auth += "@"
    host = conn.host or ""
    if conn.port:
        host += f":{conn.port}"
    url = f"{scheme}://{auth}{host}/{quote(conn.schema or '', safe='')}"
    extra = {k: v for k, v in (conn.extra_dejson or {}).items() if isinstance(v, (str, int, float, bool))}
    return url + ("?" + urlencode(extra) if extra else "")


def _aws_env(conn: Any) -> dict[str, str]:
    extra = conn.extra_dejson or {}
    env = {
        "AWS_ACCESS_KEY_ID": conn.login or "",
        "AWS_SECRET_ACCESS_KEY": conn.password or "",
        "AWS_DEFAULT_REGION": extra.get("region_name") or "",
        "AWS_ENDPOINT_URL": extra.get("endpoint_url") or (conn.host or ""),
    }
    return {k: v for k, v in env.items() if v}


def load_images(path: Path = IMAGES_FILE) -> dict[str, str]:
    """The pinned image of each stage, from the file ``make build`` writes."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} is missing: run `make build` (it writes the pinned image of each stage there), "
            "or point BIOMETRICS_IMAGES_FILE at such a file") from None
    images = doc["images"]
    for stage, ref in images.items():
        name, _, tag = ref.rpartition(":")
        if not name or "/" in tag or tag in ("", "latest"):
            raise ValueError(f"{path}: the {stage} image {ref!r} is not pinned to a version tag")
    return images


class StageOperator(DockerOperator):
    """A ``DockerOperator`` that adds the data day, the secrets and the JSON manifest."""

    def __init__(self, *, stage: str, connections: Mapping[str, str], s3_conn_id: str | None,
                 remove: str, **kwargs: Any) -> None:
        if remove not in AUTO_REMOVE_POLICIES:
            raise ValueError(f"auto-remove policy {remove!r}: use one of {AUTO_REMOVE_POLICIES}")
        # The container is removed here, after its stdout has been read (see execute).
        super().__init__(auto_remove="never", **kwargs)
        self.stage = stage
        self.connections = dict(connections)
        self.s3_conn_id = s3_conn_id
        self.remove = remove

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        context["biometrics_data_day"] = data_day(context["dag_run"])
        super().render_template_fields(context, jinja_env)

    def _secret_environment(self) -> dict[str, str]:
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException
        from airflow.sdk.log import mask_secret

        env: dict[str, str] = {}
        for name, conn_id in self.connections.items():
            conn = Connection.get(conn_id)
            if conn.password:  # Airflow masks the password itself; the URL carries it percent-encoded
                mask_secret(quote(conn.password, safe=""))
            env[name] = sqlalchemy_url(conn)
        if self.s3_conn_id:
            try:
                env.update(_aws_env(Connection.get(self.s3_conn_id)))
            except AirflowNotFoundException:
                self.log.info("no %s connection: the container uses its default AWS credentials", self.s3_conn_id)
        for name, value in env.items():
            if name not in ("AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
                mask_secret(value, name)
        return env

    def execute(self, context: Any) -> Any:
        self._private_environment = {**self._private_environment, **self._secret_environment()}
        succeeded = False
        try:
            super().execute(context)
            manifest = self._manifest()
            succeeded = True
            return manifest
        finally:
            self._remove_container(succeeded)

    def _manifest(self) -> dict[str, Any]:
        """The stage's run manifest: the last non-empty line of the container's stdout, as JSON."""
        stdout = self.cli.logs(self.container["Id"], stdout=True, stderr=False)
        lines = [line for line in stdout.decode("utf-8", "replace").splitlines() if line.strip()]
        if not lines:
            raise RuntimeError(f"biometrics-{self.stage} printed no run manifest on stdout")
        try:
            manifest = json.loads(lines[-1])
        except json.JSONDecodeError as exc:
            raise RuntimeError(f"biometrics-{self.stage}: the last stdout line is not JSON: {exc}") from None
        if not isinstance(manifest, dict):
            raise RuntimeError(f"biometrics-{self.stage}: the manifest is not a JSON object")
        return manifest

    def _remove_container(self, succeeded: bool) -> None:
        container = getattr(self, "container", None)
        if not container or self.remove == "never" or (self.remove == "success" and not succeeded):
            return
        try:
            self.cli.remove_container(container["Id"], force=True)
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the task's own outcome
            self.log.warning("could not remove container %s: %s", container["Id"][:12], exc)

    def on_kill(self) -> None:
        super().on_kill()
        if self.remove == "force":
            self._remove_container(False)


def stage_task(stage: str, subcommand: str = "readings", extra_args: Sequence[str] = (), *,
               task_id: str | None = None, dated: bool = True, staged: bool = True,
               **overrides: Any) -> StageOperator:
    """The task running ``biometrics-<stage> <subcommand> [--date D] [--staging-path P] <extra_args>``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: one of {STAGES}")
    command = [subcommand]
    if dated:
        command += ["--date", DATA_DAY_TEMPLATE]
    if staged:
        command += ["--staging-path", STAGING_PATH_TEMPLATE]
    command += list(extra_args)
    environment = {"BIOMETRICS_BATCH_SIZE": BATCH_SIZE_TEMPLATE}
    if stage == "extract":
        environment["BIOMETRICS_INBOX_PATH"] = INBOX_PATH_TEMPLATE
    settings: dict[str, Any] = {
        "task_id": task_id or stage,
        "image": load_images()[stage],
        "command": command,
        "environment": environment,
        "stage": stage,
        "connections": STAGE_CONNECTIONS[stage],
        "s3_conn_id": S3_CONN_ID,
        "docker_url": os.environ.get("BIOMETRICS_DOCKER_URL") or "unix://var/run/docker.sock",
        "network_mode": os.environ.get("BIOMETRICS_DOCKER_NETWORK") or "biometrics",
        "remove": os.environ.get("BIOMETRICS_DOCKER_AUTO_REMOVE") or "success",
        "api_version": "auto",
        "mount_tmp_dir": False,
        "force_pull": False,
        "do_xcom_push": True,
        "xcom_all": False,
        "tty": False,
        "labels": {"org.biometrics.stage": stage},
        "doc_md": f"Runs `biometrics-{stage} {subcommand}` in its pinned image; "
                  "its JSON run manifest becomes this task's XCom.",
    }
    settings.update(overrides)
    return StageOperator(**settings)
