"""`make push REGISTRY=host:port` against a real registry on loopback (Debian's docker-registry),
then the local tags are removed and every image is pulled back by its digest."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, method: str = "GET", accept: str | None = None):
    request = urllib.request.Request(url, method=method, headers={"Accept": accept} if accept else {})
    return urllib.request.urlopen(request, timeout=30)


@pytest.fixture
def registry(tmp_path, require, docker_engine):
    require(shutil.which("docker-registry") is not None, "Debian's docker-registry is not installed")
    state = tmp_path / "registry"
    port = _free_port()
    started = subprocess.run([str(REPO / "scripts" / "registry.sh"), "start", str(port), str(state)],
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    address = started.stdout.strip()
    assert address == f"127.0.0.1:{port}"
    try:
        yield address
    finally:
        subprocess.run([str(REPO / "scripts" / "registry.sh"), "stop", str(state)], timeout=30)


def test_push_then_pull_back_by_digest(registry, stage_images, images_doc, docker_cli, tmp_path):
    pushed_file = tmp_path / "pushed.txt"
    proc = subprocess.run(["make", "--no-print-directory", "push", f"REGISTRY={registry}",
                           f"PUSHED_FILE={pushed_file}"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    version = images_doc["version"]
    pushed = dict(line.split() for line in pushed_file.read_text().splitlines())

    for stage, built in stage_images.items():
        name = f"biometrics-{stage}"
        ref = f"{registry}/{name}:{version}"
        local_digest = pushed[ref]
        assert local_digest.startswith(f"{registry}/{name}@sha256:")
        # the registry serves both tags, :<version> under the digest the engine recorded
        tags = json.load(_get(f"http://{registry}/v2/{name}/tags/list"))["tags"]
        assert set(tags) == {version, "latest"}
        response = _get(f"http://{registry}/v2/{name}/manifests/{version}", accept=MANIFEST_TYPES)
        digest = response.headers["Docker-Content-Digest"]
        assert local_digest.endswith("@" + digest)
        manifest = json.load(response)
        for blob in [manifest["config"], *manifest["layers"]]:  # every blob is really there
            assert _get(f"http://{registry}/v2/{name}/blobs/{blob['digest']}", method="HEAD").status == 200

        image_id = json.loads(docker_cli("image", "inspect", built).stdout)[0]["Id"]
        docker_cli("rmi", ref, f"{registry}/{name}:latest")
        assert docker_cli("image", "inspect", ref, check=False).returncode != 0
        docker_cli("pull", local_digest)
        assert json.loads(docker_cli("image", "inspect", local_digest).stdout)[0]["Id"] == image_id
        out = docker_cli("run", "--rm", "--network", "none", local_digest, "--version").stdout
        assert name in out
        docker_cli("rmi", local_digest, check=False)
