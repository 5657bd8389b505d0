"""compose/docker-compose.yml is valid (docker-compose config) and wired the way the DAG expects."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_VENV = REPO / os.environ.get("AIRFLOW_VENV", ".venv-airflow")
COMPOSE = REPO / "compose" / "docker-compose.yml"
AIRFLOW_COMPONENTS = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")


def _config(env_file: Path) -> dict:
    proc = subprocess.run(["docker-compose", "-f", str(COMPOSE), "--env-file", str(env_file), "config"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import yaml  # PyYAML comes with moto[server] in the test venv
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="module")
def config(require):
    require(shutil.which("docker-compose") is not None, "docker-compose is not installed")
    return _config(REPO / "compose" / ".env.example")


def test_airflow_components_drive_the_host_engine_with_the_dags(config):
    for name in AIRFLOW_COMPONENTS:
        service = config["services"][name]
        volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in service["volumes"]]
        assert any(v.startswith(f"{REPO / 'dags'}:/opt/airflow/dags") for v in volumes), (name, volumes)
        # the engine's socket only where tasks run (LocalExecutor: the scheduler), not on the web server
        socket = any(v.startswith("/var/run/docker.sock:/var/run/docker.sock") for v in volumes)
        assert socket == (name == "airflow-scheduler"), (name, volumes)
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["BIOMETRICS_DOCKER_NETWORK"] == config["networks"]["default"]["name"] == "biometrics"
        assert env["BIOMETRICS_DOCKER_URL"] == "unix://var/run/docker.sock"
        assert {"AIRFLOW_CONN_BIOMETRICS_DB", "AIRFLOW_CONN_BIOMETRICS_WAREHOUSE"} <= set(env)
    commands = {name: str(config["services"][name]["command"]) for name in AIRFLOW_COMPONENTS}
    assert "api-server" in commands["airflow-api-server"] and "dag-processor" in commands["airflow-dag-processor"]


def test_a_second_stack_on_the_host_can_have_a_network_of_its_own(tmp_path, require):
    """The network's name is fixed so the stage containers can join it: a second stack with the
    same name joined the first's network, where `postgres` then named both stacks' databases."""
    require(shutil.which("docker-compose") is not None, "docker-compose is not installed")
    env_file = tmp_path / ".env"
    env_file.write_text((REPO / "compose" / ".env.example").read_text().replace(
        "BIOMETRICS_NETWORK=biometrics", "BIOMETRICS_NETWORK=biometrics-staging"))
    config = _config(env_file)
    assert config["networks"]["default"]["name"] == "biometrics-staging"
    for name in AIRFLOW_COMPONENTS:
        assert config["services"][name]["environment"]["BIOMETRICS_DOCKER_NETWORK"] == "biometrics-staging"


def test_the_airflow_image_is_the_official_3_3_image_with_the_docker_provider():
    dockerfile = (REPO / "compose" / "airflow" / "Dockerfile").read_text()
    assert re.search(r"ARG AIRFLOW_IMAGE=apache/airflow:3\.3\.\d+-python3\.11", dockerfile)
    assert "apache-airflow-providers-docker==" in dockerfile


def test_no_image_floats_on_latest(config):
    for name, service in config["services"].items():
        image = service.get("image", "")
        assert image and ":" in image and not image.endswith(":latest"), (name, image)


def test_secrets_come_from_the_env_file_not_the_compose_file():
    text = COMPOSE.read_text()
    for secret in re.findall(r"^[A-Z_]*(?:PASSWORD|SECRET|FERNET_KEY)[A-Z_]*=(.+)$",
                             (REPO / "compose" / ".env.example").read_text(), re.M):
        assert secret not in text
    assert json.dumps(text).count("${AIRFLOW_FERNET_KEY:?") == 1


def test_postgres_is_healthy_only_once_it_listens_on_tcp(config):
    # the image's init scripts run on a temporary server that listens on its socket alone
    assert config["services"]["postgres"]["healthcheck"]["test"][:4] == ["CMD", "pg_isready", "-h", "127.0.0.1"]


def _run_airflow_init(config, home: Path, password: str) -> subprocess.CompletedProcess:
    """The airflow-init command as compose hands it to bash, run by the Airflow of the tests' venv
    (with the FAB provider, as in the deployment's image) on a SQLite metadata database."""
    service = config["services"]["airflow-init"]
    flag, script = service["command"]
    env = {"PATH": f"{AIRFLOW_VENV / 'bin'}:/usr/bin:/bin", "HOME": str(home), "AIRFLOW_HOME": str(home),
           "AIRFLOW__CORE__AUTH_MANAGER": service["environment"]["AIRFLOW__CORE__AUTH_MANAGER"],
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
           "AIRFLOW_ADMIN_USER": "ops", "AIRFLOW_ADMIN_PASSWORD": password}
    return subprocess.run([service["entrypoint"], flag, script], env=env, cwd=home, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.airflow
def test_airflow_init_migrates_and_creates_the_admin_once_with_the_password_off_its_command_line(
        config, tmp_path, require):
    """`airflow users create --password …` had put the admin's password on a command line, which
    every user of the host can read while it runs."""
    require((AIRFLOW_VENV / "bin" / "airflow").exists(), f"no Airflow venv at {AIRFLOW_VENV.name}: run `make airflow-venv`")
    password = "Adm1n pw/#?@%é"
    script = config["services"]["airflow-init"]["command"][1]
    assert "AIRFLOW_ADMIN_PASSWORD" in script and "--password" not in script
    first = _run_airflow_init(config, tmp_path, password)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert 'User "ops" created with role "Admin"' in first.stdout
    again = _run_airflow_init(config, tmp_path, "another password")
    assert again.returncode == 0 and "ops already exists" in again.stdout, again.stderr[-3000:]
    check = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "python"), "-c",
         "import sys\n"
         "from werkzeug.security import check_password_hash\n"
         "from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder\n"
         "with get_application_builder() as builder:\n"
         "    user = builder.sm.find_user('ops')\n"
         "    print([r.name for r in user.roles], check_password_hash(user.password, sys.argv[1]))", password],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path),
             "AIRFLOW__CORE__AUTH_MANAGER": config["services"]["airflow-init"]["environment"]["AIRFLOW__CORE__AUTH_MANAGER"],
             "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db"},
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-3000:]
    assert check.stdout.strip().splitlines()[-1] == "['Admin'] True"  # the first password, kept by the second run


def test_the_warehouse_connection_takes_any_password(tmp_path, require):
    require(shutil.which("docker-compose") is not None, "docker-compose is not installed")
    password = "q7/Rx+2Lw9mZ#?@%41"  # openssl rand -base64 gives such; a URI would have split it
    example = (REPO / "compose" / ".env.example").read_text()
    env_file = tmp_path / ".env"
    env_file.write_text(re.sub(r"^WAREHOUSE_DB_PASSWORD=.*$", f"WAREHOUSE_DB_PASSWORD={password}", example, flags=re.M))
    config = _config(env_file)
    for name in AIRFLOW_COMPONENTS:
        connection = json.loads(config["services"][name]["environment"]["AIRFLOW_CONN_BIOMETRICS_WAREHOUSE"])
        assert connection == {"conn_type": "postgres", "host": "postgres", "port": 5432, "login": "warehouse",
                              "password": password, "schema": "warehouse"}


def test_the_init_script_keeps_passwords_off_command_lines_and_databases_to_their_roles(tmp_path):
    """compose/postgres/init-databases.sh run as the image runs it, against a real PostgreSQL 15."""
    import sqlalchemy as sa
    from biometrics_testkit.servers import PostgresServer

    server = PostgresServer.start()
    try:
        passwords = {"AIRFLOW_DB_PASSWORD": "af/pw#?@'x", "WAREHOUSE_DB_PASSWORD": "wh/pw#?@'y"}
        argv_log = tmp_path / "psql-argv"
        wrapper = tmp_path / "bin" / "psql"
        wrapper.parent.mkdir()
        wrapper.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {argv_log}\nexec {shutil.which('psql')} \"$@\"\n")
        wrapper.chmod(0o755)
        env = {"PATH": f"{wrapper.parent}:/usr/bin:/bin", "POSTGRES_USER": "postgres", "PGHOST": "127.0.0.1",
               "PGPORT": str(server.url.port), "PGPASSWORD": server.password, **passwords}
        done = subprocess.run(["sh", str(REPO / "compose" / "postgres" / "init-databases.sh")], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        argv = argv_log.read_text()
        assert all(p not in argv for p in passwords.values()), argv

        def connects(role: str, password: str, database: str) -> bool:
            url = sa.engine.URL.create("postgresql+psycopg2", role, password, "127.0.0.1", server.url.port, database)
            engine = sa.create_engine(url)
            try:
                with engine.connect() as conn:
                    return conn.execute(sa.text("SELECT current_user")).scalar() == role
            except sa.exc.OperationalError as exc:
                assert "permission denied for database" in str(exc), exc
                return False
            finally:
                engine.dispose()

        warehouse, airflow = passwords["WAREHOUSE_DB_PASSWORD"], passwords["AIRFLOW_DB_PASSWORD"]
        assert connects("warehouse", warehouse, "warehouse") and connects("airflow", airflow, "airflow")
        assert not connects("warehouse", warehouse, "airflow") and not connects("warehouse", warehouse, "postgres")
        assert not connects("airflow", airflow, "warehouse")
    finally:
        server.stop()
