"""Run stages as the images run them (console scripts in subprocesses) and inspect the warehouse."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

DAILY_JOB = (("extract", "readings"), ("transform", "readings"), ("load", "readings"), ("validate", "readings"))


@dataclass
class StageResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def manifest(self) -> dict:
        lines = self.stdout.strip().splitlines()
        assert lines, f"no manifest on stdout; stderr: {self.stderr[-2000:]}"
        return json.loads(lines[-1])


def script(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def run_stage(stage: str, command: str, *args: str, env: dict | None = None, check: bool = True,
              timeout: float = 600) -> StageResult:
    argv = [script(f"biometrics-{stage}"), command, *args]
    proc = subprocess.run(argv, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    result = StageResult(argv, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr[-3000:]}")
    return result


def run_daily_job(day: dt.date, staging: str, env: dict, stages=DAILY_JOB) -> dict[str, dict]:
    manifests = {}
    for stage, command in stages:
        manifests[stage] = run_stage(stage, command, "--date", day.isoformat(), "--staging-path", staging,
                                     env=env).manifest
    return manifests


def _canonical(value):
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else repr(round(value, 9))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    return str(value)


def snapshot(url: str, day: dt.date | None = None) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent content digest of each warehouse table (for a day).

    Only the surrogate key of dead letters is left out: everything else must be equal across reruns.
    """
    volatile = {"id"}  # a surrogate key
    engine = sa.create_engine(url)
    out = {}
    queries = {
        "biometric_readings": "SELECT * FROM biometric_readings",
        "daily_metrics": "SELECT * FROM daily_metrics",
        "etl_dead_letters": "SELECT * FROM etl_dead_letters",
    }
    with engine.connect() as conn:
        for table, query in queries.items():
            if day is not None:
                query += " WHERE date = :d"
            rows = conn.execute(sa.text(query), {"d": day} if day else {}).mappings().all()
            digests = sorted(hashlib.sha256("|".join(f"{k}={_canonical(v)}" for k, v in sorted(r.items())
                                                     if k not in volatile).encode()).hexdigest() for r in rows)
            out[table] = (len(rows), hashlib.sha256("".join(digests).encode()).hexdigest())
    engine.dispose()
    return out
