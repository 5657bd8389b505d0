"""The README's "debug one stage" command, run exactly as written."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from biometrics_testkit import sample

pytestmark = [pytest.mark.docker, pytest.mark.postgres, pytest.mark.s3]

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "README.md"
DAY = dt.date(2026, 1, 5)


def _debug_command(marker: str = "debug-command") -> str:
    text = DOC.read_text()
    match = re.search(rf"<!-- {marker} -->\s*```sh\n(.*?)```", text, re.S)
    assert match, f"{DOC.name} has no ```sh block after <!-- {marker} -->"
    return match.group(1)


def test_the_documented_docker_run_command_runs_one_stage(postgres_server, s3_endpoint, stage_images):
    command = _debug_command()
    assert "docker run" in command and "--network host" in command
    source_url = postgres_server.create_database("debug_cmd_src")
    generated = sample.generate_day(DAY, users=60, readings_per_user=20, vendor_rows=40)
    sample.write_source(source_url, generated.database)
    s3_endpoint.create_bucket("biometrics-etl")
    # The command takes the connection settings from the caller's environment (`-e NAME`), so no
    # secret is ever on its command line.
    env = {**os.environ, "BIOMETRICS_DB_URL": source_url, **s3_endpoint.env()}
    assert postgres_server.password not in command

    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads(proc.stdout.strip().splitlines()[-1])
    assert manifest["stage"] == "extract" and manifest["status"] == "success"
    assert manifest["date"] == DAY.isoformat()
    assert manifest["rows_out"] > 0
    prefix = f"staging/biometric_daily_etl/{DAY}/"
    listed = s3_endpoint.client().list_objects_v2(Bucket="biometrics-etl", Prefix=prefix)
    assert listed.get("KeyCount", 0) > 0, "the stage staged nothing in S3"
    assert postgres_server.password not in proc.stdout + proc.stderr


@pytest.fixture
def host_folder():
    """A folder of the host that uid 999 can reach (pytest's own are its owner's only)."""
    import shutil
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="biometrics-debug-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_documented_file_staging_command_writes_as_the_staging_roots_owner(postgres_server, stage_images,
                                                                             host_folder, require):
    """The README's form had taken the owner of the mounted parent folder, root in its own layout: the
    stage ran as root and left files the DAG's stages (uid 999) could neither read nor replace."""
    require(os.geteuid() == 0, "making a folder of uid 999 needs root")
    srv = host_folder / "srv" / "biometrics"
    for folder in (host_folder / "srv", srv, srv / "staging"):
        folder.mkdir()
        folder.chmod(0o755)  # whatever the umask (a stage run in this process sets 077)
    os.chown(srv / "staging", 999, 999)  # the DAG's containers' user owns the staging root
    command = _debug_command("debug-command-file").replace("/srv/biometrics", str(srv))
    assert "--user" in command and "-v " in command
    source_url = postgres_server.create_database("debug_file_src")
    sample.write_source(source_url, sample.generate_day(DAY, users=30, readings_per_user=10).database)
    env = {**os.environ, "BIOMETRICS_DB_URL": source_url}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "success"
    day = srv / "staging" / "biometric_daily_etl" / DAY.isoformat()
    written = [day, day / "manifests" / "extract-readings.json", *(day / "extract" / "readings").iterdir()]
    assert {(path.stat().st_uid, path.stat().st_gid) for path in written} == {(999, 999)}
