"""Fixtures of the tests that run the stage images on a real Docker engine.

The images come from ``make build`` (CI: ``make build OFFLINE=1``, wired into ``make test``), which
records them in dags/biometrics_images.json. Without an engine or the images these tests skip on a
developer machine and fail in CI (CI=true): CI must never pass without having run them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from biometrics_testkit.compare import require

REPO = Path(__file__).resolve().parents[2]
IMAGES_FILE = REPO / "dags" / "biometrics_images.json"
STAGES = ("extract", "transform", "load", "validate", "backup")


_require = require  # skip locally, fail in CI


def docker(*args: str, check: bool = True, timeout: float = 600, env: dict | None = None,
           **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}"
                             f"\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def docker_cli():
    """``docker_cli(*args, check=True, ...)``: run the docker CLI, raise with its output on failure."""
    return docker


@pytest.fixture(scope="session")
def require():
    """``require(condition, reason)``: skip locally, fail in CI."""
    return _require


@pytest.fixture(scope="session")
def docker_engine() -> None:
    ok = shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=60).returncode == 0
    _require(ok, "no Docker engine answers: run `make docker-engine`")


@pytest.fixture(scope="session")
def images_doc(docker_engine) -> dict:
    _require(IMAGES_FILE.exists(), f"no {IMAGES_FILE.relative_to(REPO)}: build the images (`make build`, "
                                   "or `make build OFFLINE=1` on an engine that cannot pull)")
    doc = json.loads(IMAGES_FILE.read_text())
    missing = [ref for ref in doc["images"].values()
               if subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode != 0]
    _require(not missing, f"images listed in {IMAGES_FILE.name} are not on the engine: {missing} (run `make build`)")
    return doc


@pytest.fixture(scope="session")
def stage_images(images_doc) -> dict[str, str]:
    """stage -> pinned image reference, as the DAG runs them."""
    assert set(images_doc["images"]) == set(STAGES), images_doc
    return dict(images_doc["images"])
