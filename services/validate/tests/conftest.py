"""Loaded days to validate: the real pipeline (extract, transform, load CLIs) run once per backend
on a seeded sample day, then copied for every test so each test may tamper with its own warehouse.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from biometrics_testkit import sample
from biometrics_validate.cli import main

DAY = dt.date(2026, 1, 5)
BIN = Path(sys.executable).parent


def stage(name: str, *args: str, env: dict[str, str]) -> dict:
    """Run another stage's CLI (a subprocess: services are never imported by each other)."""
    proc = subprocess.run([str(BIN / f"biometrics-{name}"), *args], env={**os.environ, **env},
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"biometrics-{name} {' '.join(args)} failed:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}


def run_pipeline(src_url: str, wh_url: str, staging: Path, day_data: sample.SampleDay) -> None:
    sample.write_source(src_url, day_data.database, replace=True)
    sample.write_vendor_files(staging / "inbox", DAY, day_data.vendors)
    env = {"BIOMETRICS_DB_URL": src_url, "BIOMETRICS_WAREHOUSE_URL": wh_url}
    for name in ("extract", "transform", "load"):
        stage(name, "readings", "--date", DAY.isoformat(), "--staging-path", str(staging), env=env)


@pytest.fixture(scope="session")
def sample_day() -> sample.SampleDay:
    return sample.generate_day(DAY, users=120, readings_per_user=20, seed=11, vendor_rows=160)


@pytest.fixture(scope="session")
def sqlite_golden(tmp_path_factory, sample_day) -> Path:
    base = tmp_path_factory.mktemp("sqlite-golden")
    run_pipeline(f"sqlite:///{base / 'src.db'}", f"sqlite:///{base / 'wh.db'}", base / "staging", sample_day)
    return base


@pytest.fixture(scope="session")
def pg_golden(postgres_server, tmp_path_factory, sample_day) -> dict:
    base = tmp_path_factory.mktemp("pg-golden")
    src = postgres_server.create_database("validate_src")
    template = postgres_server.create_database("validate_wh_template")
    run_pipeline(src, template, base / "staging", sample_day)
    return {"src": src, "template": "validate_wh_template", "staging": base / "staging"}


@dataclass
class Loaded:
    """One test's own copy of a loaded day."""

    backend: str
    env: dict[str, str]
    staging: Path | str  # a local folder, or an s3:// URL
    engine: sa.Engine

    def execute(self, sql: str, **params) -> int:
        """Tamper with the warehouse; date parameters are typed (SQLite stores ISO text)."""
        clause = sa.text(sql).bindparams(*[sa.bindparam(k, type_=sa.Date) for k, v in params.items()
                                           if isinstance(v, dt.date)])
        with self.engine.begin() as conn:
            return conn.execute(clause, params).rowcount

    def scalar(self, sql: str, **params):
        clause = sa.text(sql).bindparams(*[sa.bindparam(k, type_=sa.Date) for k, v in params.items()
                                           if isinstance(v, dt.date)])
        with self.engine.connect() as conn:
            return conn.execute(clause, params).scalar()

    def add_partition(self, day: dt.date) -> None:
        """PostgreSQL keeps one partition per day: history days need theirs before rows go in."""
        if self.backend == "postgresql":
            self.execute(f"CREATE TABLE IF NOT EXISTS biometric_readings_p{day:%Y%m%d} PARTITION OF biometric_readings "
                         f"FOR VALUES FROM ('{day}') TO ('{day + dt.timedelta(days=1)}')")

    def validate(self, *extra: str, date: dt.date = DAY, env: dict[str, str] | None = None) -> "Outcome":
        result = CliRunner().invoke(main, ["readings", "--date", date.isoformat(), "--staging-path",
                                           str(self.staging), *extra], env={**self.env, **(env or {})})
        lines = result.stdout.strip().splitlines()
        manifest = json.loads(lines[-1]) if lines else None
        return Outcome(result.exit_code, result.stderr, manifest)


@dataclass
class Outcome:
    exit_code: int
    stderr: str
    manifest: dict | None

    @property
    def checks(self) -> dict[str, dict]:
        return {c["name"]: c for c in self.manifest["details"]["checks"]}

    @property
    def failed(self) -> list[str]:
        return [c["name"] for c in self.manifest["details"]["checks"] if not c["passed"]]

    @property
    def error_line(self) -> str:
        return [line for line in self.stderr.splitlines() if line.startswith("biometrics-validate: error:")][-1]


def _copy_sqlite(golden: Path, target: Path) -> dict[str, str]:
    for name in ("src.db", "wh.db"):
        shutil.copy(golden / name, target / name)
    return {"BIOMETRICS_DB_URL": f"sqlite:///{target / 'src.db'}",
            "BIOMETRICS_WAREHOUSE_URL": f"sqlite:///{target / 'wh.db'}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def loaded(request, tmp_path) -> Loaded:
    staging = tmp_path / "staging"
    if request.param == "sqlite":
        golden = request.getfixturevalue("sqlite_golden")
        shutil.copytree(golden / "staging", staging)
        env = _copy_sqlite(golden, tmp_path)
        engine = sa.create_engine(env["BIOMETRICS_WAREHOUSE_URL"])
        yield Loaded("sqlite", env, staging, engine)
        engine.dispose()
        return
    server = request.getfixturevalue("postgres_server")
    golden = request.getfixturevalue("pg_golden")
    shutil.copytree(golden["staging"], staging)
    name = f"validate_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{golden["template"]}"'))
    url = server.url_for(name)
    engine = sa.create_engine(url)
    yield Loaded("postgresql", {"BIOMETRICS_DB_URL": golden["src"], "BIOMETRICS_WAREHOUSE_URL": url}, staging, engine)
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
