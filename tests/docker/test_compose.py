"""compose/docker-compose.yml is valid (docker-compose config) and wired the way the DAG expects."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose" / "docker-compose.yml"
AIRFLOW_COMPONENTS = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")


@pytest.fixture(scope="module")
def config(require):
    require(shutil.which("docker-compose") is not None, "docker-compose is not installed")
    proc = subprocess.run(["docker-compose", "-f", str(COMPOSE), "--env-file", str(REPO / "compose" / ".env.example"),
                           "config"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import yaml  # PyYAML comes with moto[server] in the test venv
    return yaml.safe_load(proc.stdout)


def test_airflow_components_drive_the_host_engine_with_the_dags(config):
    for name in AIRFLOW_COMPONENTS:
        service = config["services"][name]
        volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in service["volumes"]]
        assert any(v.startswith(f"{REPO / 'dags'}:/opt/airflow/dags") for v in volumes), (name, volumes)
        assert any(v.startswith("/var/run/docker.sock:/var/run/docker.sock") for v in volumes), (name, volumes)
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["BIOMETRICS_DOCKER_NETWORK"] == config["networks"]["default"]["name"] == "biometrics"
        assert env["BIOMETRICS_DOCKER_URL"] == "unix://var/run/docker.sock"
        assert {"AIRFLOW_CONN_BIOMETRICS_DB", "AIRFLOW_CONN_BIOMETRICS_WAREHOUSE"} <= set(env)
    commands = {name: str(config["services"][name]["command"]) for name in AIRFLOW_COMPONENTS}
    assert "api-server" in commands["airflow-api-server"] and "dag-processor" in commands["airflow-dag-processor"]


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
