"""The one place that knows how a BIOMETRICS ETL stage runs in Airflow: a ``DockerOperator`` task.

``stage_task(stage, subcommand, extra_args)`` builds the task that runs the stage image::

    biometrics-<stage> <subcommand> --date <data day> --staging-path <root>/<dag_id>/<data day> <extra_args>

- **Image**: pinned, from ``biometrics_images.json`` next to this file (written by ``make build``;
  ``BIOMETRICS_IMAGES_FILE`` points elsewhere). A ``:latest`` or untagged image is refused.
- **Data day**: the run's ``data_day`` param when it is given (``YYYY-MM-DD``: to reprocess a day),
  else the UTC day before the run's logical date (a manual run without a logical date: the day
  before it was triggered); see ``data_day``. A run at 2026-01-06T02:00Z processes 2026-01-05.
- **Variables** (read when the task runs, never while the DAG is parsed): ``etl_staging_path``
  (default ``s3://biometrics-etl/staging``; ``s3://bucket/prefix`` or ``file:///absolute/path``, which
  is bind-mounted from the Docker host into every stage's container at the same path, so the stages
  share it), ``batch_size`` (default ``10000``) and, for extract, ``vendor_inbox_path`` (default
  empty: the stage's own default, ``<staging path>/inbox``) and ``stage_settings`` (a JSON object of
  the stages' tuning settings, ``STAGE_SETTINGS``, given to every stage's container). Blank values
  count as unset.
- **Connections** reach the container only through ``private_environment``, filled in ``execute``:
  never in the command, never in a templated (rendered, stored, shown) field. ``biometrics_db`` ->
  ``BIOMETRICS_DB_URL``, ``biometrics_warehouse`` -> ``BIOMETRICS_WAREHOUSE_URL`` (Airflow's
  ``postgres://`` becomes SQLAlchemy's ``postgresql+psycopg2://``); the optional ``biometrics_s3``
  (type aws: login/password = key id/secret, extra ``region_name``, ``endpoint_url``,
  ``aws_session_token``) -> ``AWS_*``.
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
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk import Param
from docker.types import Mount

STAGES = ("extract", "transform", "load", "validate", "backup")
DEFAULT_STAGING_PATH = "s3://biometrics-etl/staging"
DEFAULT_BATCH_SIZE = "10000"

# What the Variable stage_settings may give every stage's container: the stages' settings that are
# neither secrets (Connections give those) nor Variables of their own (batch_size, vendor_inbox_path)
STAGE_SETTINGS = ("BIOMETRICS_EXTRACT_CONNECTIONS", "BIOMETRICS_WORK_DIR", "BIOMETRICS_MEMORY_LIMIT",
                  "BIOMETRICS_LOAD_MAINTENANCE_WORK_MEM", "BIOMETRICS_VALIDATE_WORK_MEM", "BIOMETRICS_THREADS",
                  "BIOMETRICS_RETENTION_DAYS", "BIOMETRICS_VOLUME_MIN_RATIO", "BIOMETRICS_VOLUME_MAX_RATIO",
                  "BIOMETRICS_LOG_LEVEL")

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
    # a multiplier in Airflow 3 (True would mean 1.0); Airflow adds jitter, so the n-th retry waits
    # between 2 * 2**(n-1) and twice that: [2, 4), [4, 8), [8, 16) minutes
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": dt.timedelta(minutes=60),
    "execution_timeout": dt.timedelta(hours=3),
}

# Templates rendered when the task runs, from values StageOperator puts in the context then (the
# Variables are read at that time, never at parse time).
BATCH_SIZE_TEMPLATE = "{{ var.value.get('batch_size', '%s') | trim }}" % DEFAULT_BATCH_SIZE
INBOX_PATH_TEMPLATE = "{{ biometrics_inbox_path }}"
DATA_DAY_TEMPLATE = "{{ biometrics_data_day }}"
STAGING_PATH_TEMPLATE = "{{ biometrics_staging_root }}/{{ dag.dag_id }}/" + DATA_DAY_TEMPLATE

# The params of a DAG whose tasks are stage tasks: `data_day` reprocesses one day on a manual run
# (`airflow dags trigger <dag> --conf '{"data_day": "2026-01-05"}'`), whatever the logical date.
def data_day_params() -> dict[str, Param]:
    """Checked by Airflow when a run is triggered: an impossible day (2026-02-30) is refused then,
    instead of failing the run's first task after its retries."""
    day = {"type": "string", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "format": "date"}
    return {"data_day": Param(None, anyOf=[{"type": "null"}, {"type": "string", "maxLength": 0}, day],
                              description="The UTC day to process (YYYY-MM-DD); empty: the day before the "
                                          "logical date")}


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def data_day(dag_run: Any, params: Mapping[str, Any] | None = None) -> str:
    """The UTC day a run processes: its ``data_day`` param if given, else the day before its logical
    date (or, without one, its run_after)."""
    chosen = (params or {}).get("data_day")
    if chosen not in (None, ""):
        text = str(chosen).strip()
        try:
            if not _DAY.fullmatch(text):
                raise ValueError
            return dt.date.fromisoformat(text).isoformat()
        except ValueError:
            raise ValueError(f"param data_day {chosen!r} is not a day: give it as YYYY-MM-DD") from None
    moment = getattr(dag_run, "logical_date", None) or dag_run.run_after
    if moment.tzinfo is None:
        raise ValueError(f"naive run date {moment!r}: Airflow dates are timezone-aware")
    return (moment.astimezone(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()


def staging_location(value: Any, name: str, default: str = "") -> str:
    """A Variable holding a staging location, as the stages get it: ``s3://bucket[/prefix]`` or
    ``file:///absolute/path``, without a trailing slash; blank is ``default``.

    Containers share no folder unless one is mounted, so a bare path is refused rather than written
    inside a container that is then removed."""
    text = str(value if value is not None else "").strip()
    if not text:
        return default
    parts = urlsplit(text)
    if "?" in text or "#" in text:  # the stages cut a URL's path there
        raise ValueError(f"Variable {name} {text!r}: a URL's path cannot hold a raw '?' or '#' (a file:// URL "
                         "takes %3F and %23; an S3 prefix is literal and cannot hold them)")
    if parts.scheme == "s3" and parts.netloc:
        return text.rstrip("/")
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        path = parts.path.rstrip("/")
        if path:
            _check_host_folder(unquote(path), name, text)
            return f"file://{path}"
    raise ValueError(f"Variable {name} {text!r}: use s3://bucket/prefix, or file:///absolute/path "
                     "(a folder of the Docker host, bind-mounted into every stage's container)")


def stage_settings(value: Any, name: str = "stage_settings") -> dict[str, str]:
    """The Variable ``stage_settings`` as the containers' environment: a JSON object of
    ``STAGE_SETTINGS`` names and their values (text or numbers; the stages check the values)."""
    text = str(value if value is not None else "").strip()
    if not text:
        return {}
    example = '{"BIOMETRICS_MEMORY_LIMIT": "1GB", "BIOMETRICS_THREADS": 2}'
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"Variable {name} is not JSON ({exc.msg}): give an object such as {example}") from None
    if not isinstance(settings, dict):
        raise ValueError(f"Variable {name} must be a JSON object such as {example}")
    unknown = sorted(set(settings) - set(STAGE_SETTINGS))
    if unknown:
        raise ValueError(f"Variable {name}: {', '.join(unknown)} cannot be set there; it takes "
                         f"{', '.join(STAGE_SETTINGS)} (batch_size and vendor_inbox_path are Variables of their "
                         "own, databases and S3 credentials are Connections)")
    environment = {}
    for key, setting in settings.items():
        if isinstance(setting, bool) or not isinstance(setting, (str, int, float)):
            kind = {bool: "a boolean", dict: "an object", list: "a list"}.get(type(setting), "null")
            raise ValueError(f"Variable {name}: {key} must be text or a number, not {kind}")  # not the value: task logs
        environment[key] = str(setting).strip()
    return environment


# Folders of the Docker host that a file:// staging Variable may not name (nor a folder in them):
# mounted writable into the stages' containers, they would hand them the host
_SYSTEM_FOLDERS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
                   "/sbin", "/sys", "/usr", "/var/run", "/var/lib/docker")


def _check_host_folder(folder: str, name: str, text: str) -> None:
    """A file:// staging folder is bind-mounted, writable, into every stage's container."""
    parts = folder.split("/")
    if ".." in parts or "." in parts or "" in parts[1:]:  # '//etc' is /etc to the engine
        raise ValueError(f"Variable {name} {text!r}: give the folder's path without '.', '..' or '//'")
    # a system folder, a folder in one, or one that holds one (/var holds /var/lib/docker)
    system = next((f for f in _SYSTEM_FOLDERS
                   if folder == f or folder.startswith(f + "/") or f.startswith(folder + "/")), None)
    if system:
        raise ValueError(f"Variable {name} {text!r}: {folder} is or holds a system folder of the Docker host; "
                         "give a folder of its own, such as /srv/biometrics/staging")


def _file_path(location: str) -> str | None:
    """The Docker host's folder of a file:// location (percent-decoded, as the stages read it)."""
    return unquote(location[len("file://"):]) if location.startswith("file://") else None


# Extras of Airflow's postgres connection that its PostgresHook reads itself and never hands to libpq
_HOOK_ONLY_EXTRAS = frozenset({
    "iam", "redshift", "redshift-serverless", "cluster-identifier", "workgroup-name", "aws_conn_id",
    "azure_conn_id", "cursor", "sqlalchemy_scheme", "sqlalchemy_query", "enable_log_db_messages"})


def _query_value(value: Any) -> str:
    if isinstance(value, bool):  # libpq's switches (keepalives, ...) take 1 and 0, not True
        return "1" if value else "0"
    return str(value)


def sqlalchemy_url(conn: Any) -> str:
    """A SQLAlchemy URL for an Airflow connection (``postgres`` -> ``postgresql+psycopg2``)."""
    conn_type = (conn.conn_type or "").lower()
    extra = conn.extra_dejson or {}
    if conn_type == "sqlite":  # Airflow keeps the database file's path in host
        path = conn.host or conn.schema or ""
        return f"sqlite:///{path}" if path else "sqlite://"
    if conn_type in ("postgres", "postgresql", "postgresql+psycopg2"):
        scheme = str(extra.get("sqlalchemy_scheme") or "postgresql+psycopg2")
    elif conn_type:
        scheme = conn_type.replace("_", "+", 1) if conn_type.startswith("postgresql_") else conn_type
    else:
        raise ValueError(f"connection {conn.conn_id!r} has no type")
    auth = ""
    if conn.login or conn.password:
        auth = quote(conn.login or "", safe="")
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        auth += "@"
    host = conn.host or ""
    if ":" in host and not host.startswith("["):  # an IPv6 address (Airflow drops the brackets)
        host = f"[{host}]"
    if conn.port:
        host += f":{conn.port}"
    url = f"{scheme}://{auth}{host}/{quote(conn.schema or '', safe='')}"
    query = {k: _query_value(v) for k, v in extra.items()
             if isinstance(v, (str, int, float, bool)) and k not in _HOOK_ONLY_EXTRAS}
    return url + ("?" + urlencode(query) if query else "")


def _aws_env(conn: Any) -> dict[str, str]:
    extra = conn.extra_dejson or {}
    env = {
        "AWS_ACCESS_KEY_ID": conn.login or "",
        "AWS_SECRET_ACCESS_KEY": conn.password or "",
        "AWS_SESSION_TOKEN": extra.get("aws_session_token") or "",
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable JSON file ({exc}): run `make build` again") from None
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, dict):
        raise ValueError(f"{path} has no \"images\" object: run `make build` again")
    missing = [stage for stage in STAGES if stage not in images]
    if missing:
        raise ValueError(f"{path} names no image for {', '.join(missing)}: run `make build` again")
    for stage, ref in images.items():
        if not isinstance(ref, str):
            raise ValueError(f"{path}: the {stage} image {ref!r} is not an image reference")
        name, _, tag = ref.rpartition(":")
        if not name or "/" in tag or tag in ("", "latest") or ref != ref.strip() or any(c.isspace() for c in ref):
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
        variables = context["var"]["value"]
        context["biometrics_data_day"] = data_day(context["dag_run"], context.get("params"))
        context["biometrics_staging_root"] = self._staging_root = staging_location(
            variables.get("etl_staging_path", None), "etl_staging_path", DEFAULT_STAGING_PATH)
        context["biometrics_inbox_path"] = self._inbox_path = staging_location(
            variables.get("vendor_inbox_path", None), "vendor_inbox_path")
        tuning = stage_settings(variables.get("stage_settings", None))
        super().render_template_fields(context, jinja_env)
        self.environment = {**tuning, **self.environment}

    def _shared_folders(self) -> list[Mount]:
        """``file://`` staging: the folders bind-mounted from the Docker host at the same path, so the
        stages' containers all see what the others wrote (a container's own disk goes with it)."""
        folders = {path for path in (_file_path(getattr(self, "_staging_root", "")),
                                     _file_path(getattr(self, "_inbox_path", "") if self.stage == "extract" else ""))
                   if path}
        mounted = {m.get("Target") for m in self.mounts}
        return [Mount(target=path, source=path, type="bind") for path in sorted(folders) if path not in mounted]

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
                # the value alone: with a name, Airflow masks only under names that look secret
                mask_secret(value)
        return env

    def execute(self, context: Any) -> Any:
        self._private_environment = {**self._private_environment, **self._secret_environment()}
        self.mounts = [*self.mounts, *self._shared_folders()]
        self._removed = False
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
        if (not container or getattr(self, "_removed", False) or self.remove == "never"
                or (self.remove == "success" and not succeeded)):
            return
        try:
            self.cli.remove_container(container["Id"], force=True)
            self._removed = True
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the task's own outcome
            self.log.warning("could not remove container %s: %s", container["Id"][:12], exc)

    def on_kill(self) -> None:
        # A timeout ends execute (whose cleanup may have removed the container) before Airflow calls
        # this: stopping a removed container would replace the timeout by Docker's 404
        if not getattr(self, "_removed", False):
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
