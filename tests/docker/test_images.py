"""The stage images as built by `make build`: one Dockerfile shape, pinned tags, labels, a non-root
user, the stage's CLI as entrypoint, and nothing but what the stage needs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
STAGES = ("extract", "transform", "load", "validate", "backup")
# Modules no stage image may hold: the orchestrator, test tools, the other side of the house.
FORBIDDEN = ("airflow", "pytest", "moto", "biometrics_testkit", "numpy", "pip", "setuptools", "docker")


def _make(*args: str) -> str:
    return subprocess.run(["make", "-s", "--no-print-directory", *args], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.strip()


def _normalised_dockerfile(stage: str) -> str:
    text = (REPO / "services" / stage / "Dockerfile").read_text()
    text = re.sub(r'ARG SYSTEM_PACKAGES="[^"]*"', 'ARG SYSTEM_PACKAGES="<packages>"', text)
    text = text.replace(" \\\n    && pg_dump --version && pg_restore --version", "")
    return re.sub(rf"(?<![a-z]){stage}(?![a-z])", "<stage>", text)


def test_every_stage_dockerfile_has_the_same_shape():
    shapes = {stage: _normalised_dockerfile(stage) for stage in STAGES}
    assert len(set(shapes.values())) == 1, "the Dockerfiles differ beyond the stage name and system packages"
    text = shapes["extract"]
    assert text.count("ARG BASE_IMAGE=python:3.11") == 1 and "@sha256:" in text  # pinned official default
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M).group(1)
    assert f"PYTHON_BASE_IMAGE   := {default}" in (REPO / "mk" / "docker.mk").read_text()
    assert "USER 999:999" in text
    assert 'ENTRYPOINT ["biometrics-<stage>"]' in text
    assert "--help" in text.split("ENTRYPOINT")[0].split("USER 999:999")[1]  # CLI start check, as the user
    assert "org.opencontainers.image.version" in text and "org.opencontainers.image.revision" in text
    deps = text.index("requirements/<stage>.txt")
    assert deps < text.index("COPY build/wheelhouse/local/"), "dependencies must be a layer before the package"
    assert "--no-index" in text


def test_images_are_tagged_with_the_version_and_commit(images_doc, stage_images):
    version = images_doc["version"]
    assert version == _make("image-version"), "images are stale: run `make build` again"
    package_version = (REPO / "VERSION").read_text().strip()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert version.startswith(f"{package_version}-")
    if commit:
        assert commit[:12] in version
    for stage, ref in stage_images.items():
        assert ref == f"{images_doc['registry']}/biometrics-{stage}:{version}"
        assert not ref.endswith(":latest")


@pytest.mark.parametrize("stage", STAGES)
def test_image_metadata(stage, stage_images, images_doc, docker_cli):
    ref = stage_images[stage]
    info = json.loads(docker_cli("image", "inspect", ref).stdout)[0]
    config = info["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == images_doc["version"]
    assert labels["org.opencontainers.image.revision"] == images_doc["git_commit"]
    assert labels["org.opencontainers.image.title"] == f"biometrics-{stage}"
    assert config["User"] == "999:999"
    assert config["Entrypoint"] == [f"biometrics-{stage}"]
    # :latest names the same image
    latest = ref.rsplit(":", 1)[0] + ":latest"
    assert json.loads(docker_cli("image", "inspect", latest).stdout)[0]["Id"] == info["Id"]


@pytest.mark.parametrize("stage", STAGES)
def test_the_cli_starts_as_a_non_root_user(stage, stage_images, docker_cli):
    ref = stage_images[stage]
    help_text = docker_cli("run", "--rm", "--network", "none", ref, "--help").stdout
    assert f"biometrics-{stage}" in help_text
    version = docker_cli("run", "--rm", "--network", "none", ref, "--version").stdout
    assert (REPO / "VERSION").read_text().strip() in version
    uid = docker_cli("run", "--rm", "--network", "none", "--entrypoint", "id", ref, "-u").stdout.strip()
    assert uid == "999"


@pytest.mark.parametrize("stage", STAGES)
def test_the_image_holds_only_what_its_stage_needs(stage, stage_images, docker_cli):
    others = [f"biometrics_{s}" for s in STAGES if s != stage]
    probe = ("import importlib.util, json, sys; "
             "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))")
    found = json.loads(docker_cli(
        "run", "--rm", "--network", "none", "--entrypoint", "python", stage_images[stage], "-c", probe,
        "biometrics_core", f"biometrics_{stage}", *others, *FORBIDDEN).stdout)
    assert found.pop("biometrics_core") and found.pop(f"biometrics_{stage}")
    assert not [m for m, present in found.items() if present], found


def test_the_backup_image_carries_the_postgresql_15_client(stage_images, docker_cli):
    for tool in ("pg_dump", "pg_restore"):
        out = docker_cli("run", "--rm", "--network", "none", "--entrypoint", tool, stage_images["backup"],
                         "--version").stdout
        assert re.search(r"\(PostgreSQL\) 15\.", out), out
