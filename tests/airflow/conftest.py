"""Fixtures of the tests that run the DAGs with Airflow 3 (its own venv, .venv-airflow).

These tests run in the repository venv (.venv, with the testkit's real PostgreSQL and S3 fixtures)
and call Airflow as a separate program, as a deployment does. Without .venv-airflow (`make
airflow-venv`) they skip on a developer machine and fail in CI (CI=true).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from biometrics_testkit.compare import require

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_VENV = REPO / os.environ.get("AIRFLOW_VENV", ".venv-airflow")
DAGS = REPO / "dags"
PROBE = Path(__file__).with_name("dag_probe.py")


_require = require  # skip locally, fail in CI


@dataclass
class Airflow:
    """Airflow commands against one AIRFLOW_HOME (a migrated SQLite metadata database)."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> str:
        return str(AIRFLOW_VENV / "bin" / "python")

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("AIRFLOW_", "AIRFLOW__", "BIOMETRICS_", "AWS_"))}
        return {**base, **self.env, **(extra or {})}

    def run(self, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 900,
            check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(AIRFLOW_VENV / "bin" / "airflow"), *args], env=self.environ(extra_env),
                              cwd=self.home, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
        return proc

    def probe(self, out: Path, logical_dates: list[str], extra_env: dict[str, str] | None = None) -> dict:
        """Parse and render dags/ with Airflow (see dag_probe.py)."""
        proc = subprocess.run([self.python, str(PROBE), str(out), *logical_dates], env=self.environ(extra_env),
                              cwd=self.home, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        return json.loads(out.read_text())

    def query(self, sql: str, *params) -> list[sqlite3.Row]:
        """Read the metadata database (XComs, task instances, rendered fields)."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            db.row_factory = sqlite3.Row
            return db.execute(sql, params).fetchall()


@pytest.fixture(scope="session")
def airflow(tmp_path_factory) -> Airflow:
    _require((AIRFLOW_VENV / "bin" / "airflow").exists(),
             f"no Airflow venv at {AIRFLOW_VENV.name}: run `make airflow-venv`")
    home = tmp_path_factory.mktemp("airflow-home")
    af = Airflow(home, {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
    })
    af.run("db", "migrate", timeout=600)
    return af


@pytest.fixture(scope="session")
def require():
    """``require(condition, reason)``: skip locally, fail in CI."""
    return _require


@pytest.fixture(scope="session")
def stage_images() -> dict[str, str]:
    """The pinned images the DAG runs (dags/biometrics_images.json from `make build`), on the engine."""
    engine = subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0
    _require(engine, "no Docker engine answers: run `make docker-engine`")
    images_file = DAGS / "biometrics_images.json"
    _require(images_file.exists(), "no dags/biometrics_images.json: run `make build` (OFFLINE=1 without pulls)")
    images = json.loads(images_file.read_text())["images"]
    missing = [ref for ref in images.values()
               if subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode != 0]
    _require(not missing, f"images not on the engine: {missing} (run `make build`)")
    return images
