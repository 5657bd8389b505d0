"""A stage task that times out under BIOMETRICS_DOCKER_AUTO_REMOVE=force: the task fails on its
timeout, and its container is gone. (`execute`'s cleanup removes the container before Airflow calls
`on_kill`, whose stop of the removed container had replaced the timeout by Docker's 404.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"

pytestmark = [pytest.mark.airflow, pytest.mark.docker]

PROBE_DAG = '''
import datetime as dt
import pendulum
from airflow.sdk import DAG
from biometrics_stage import DEFAULT_ARGS, stage_task

with DAG(dag_id="stage_timeout_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         default_args={**DEFAULT_ARGS, "retries": 0}):
    stage_task("transform", "sleep 120", task_id="sleeps", dated=False, staged=False,
               entrypoint=["/bin/sh", "-c"], execution_timeout=dt.timedelta(seconds=8))
'''


def test_a_timed_out_task_reports_its_timeout_and_leaves_no_container(airflow, stage_images, tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DAGS / "biometrics_stage.py", dags)
    (dags / "stage_timeout_probe.py").write_text(PROBE_DAG)
    env = {"AIRFLOW__CORE__DAGS_FOLDER": str(dags), "BIOMETRICS_IMAGES_FILE": str(DAGS / "biometrics_images.json"),
           "BIOMETRICS_DOCKER_NETWORK": "none", "BIOMETRICS_DOCKER_AUTO_REMOVE": "force"}
    airflow.run("dags", "reserialize", extra_env=env, timeout=300)
    proc = airflow.run("tasks", "test", "stage_timeout_probe", "sleeps", "2026-01-06T02:00:00+00:00",
                       extra_env=env, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    # (`airflow tasks test` exits 0 whatever the task's outcome: its log says)
    assert "AirflowTaskTimeout" in output, output[-4000:]
    assert "NotFound" not in output and "404 Client Error" not in output, output[-4000:]
    left = subprocess.run(["docker", "ps", "-a", "-q", "--filter", "label=org.biometrics.stage"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert left == []
