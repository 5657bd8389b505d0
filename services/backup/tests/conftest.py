"""Warehouses to back up: the real pipeline (extract, transform, load CLIs) run once per backend on
four sample days around a 90-day retention cutoff, then copied for every test.

Staging is a pipeline root with one folder per day (``<root>/<date>/``), as a DAG lays it out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from biometrics_backup.cli import main
from biometrics_testkit import sample
from biometrics_testkit.harness import run_stage

DAY = dt.date(2026, 4, 10)          # the run date of backup and purge
CUTOFF = DAY - dt.timedelta(days=90)  # 2026-01-10: kept; anything before goes
DAYS = (dt.date(2025, 12, 31), CUTOFF - dt.timedelta(days=1), CUTOFF, DAY)
TABLES = ("alembic_version", "biometric_readings", "daily_metrics", "etl_dead_letters", "etl_runs")


def _build(src_url: str, wh_url: str, root: Path) -> None:
    env = {"BIOMETRICS_DB_URL": src_url, "BIOMETRICS_WAREHOUSE_URL": wh_url, "BIOMETRICS_LOG_LEVEL": "WARNING"}
    run_stage("load", "migrate", env=env)
    for index, day in enumerate(DAYS):
        generated = sample.generate_day(day, users=40, readings_per_user=10, seed=100 + index, vendor_rows=40)
        sample.write_source(src_url, generated.database, replace=True)
        staging = root / day.isoformat()
        sample.write_vendor_files(staging / "inbox", day, generated.vendors)
        for stage in ("extract", "transform", "load"):
            run_stage(stage, "readings", "--date", day.isoformat(), "--staging-path", str(staging), env=env)


@pytest.fixture(scope="session")
def sqlite_golden(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("backup-sqlite-golden")
    _build(f"sqlite:///{base / 'src.db'}", f"sqlite:///{base / 'wh.db'}", base / "staging")
    return base


@pytest.fixture(scope="session")
def pg_golden(postgres_server, tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("backup-pg-golden")
    template = postgres_server.create_database("backup_wh_template")
    _build(f"sqlite:///{base / 'src.db'}", template, base / "staging")
    return {"template": "backup_wh_template", "staging": base / "staging"}


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def manifest(self) -> dict:
        lines = self.stdout.strip().splitlines()
        assert lines, f"no manifest on stdout (exit {self.exit_code}); stderr: {self.stderr[-2000:]}"
        return json.loads(lines[-1])

    @property
    def error_line(self) -> str:
        errors = [line for line in self.stderr.splitlines() if line.startswith("biometrics-backup: error:")]
        assert len(errors) == 1, self.stderr
        return errors[0]


def backup(*args: str, env: dict[str, str] | None = None) -> Outcome:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return Outcome(result.exit_code, result.stdout, result.stderr)


@dataclass
class Warehouse:
    """One test's own copy of the built warehouse and its staging root."""

    dialect: str
    url: str
    staging: Path
    password: str = ""

    @property
    def env(self) -> dict[str, str]:
        return {"BIOMETRICS_WAREHOUSE_URL": self.url}

    def backup(self, *args: str, env: dict[str, str] | None = None) -> Outcome:
        return backup(*args, env={**self.env, **(env or {})})


class Databases:
    """Fresh, empty restore targets of one backend."""

    def __init__(self, dialect: str, tmp_path: Path, server=None):
        self.dialect, self.tmp_path, self.server = dialect, tmp_path, server
        self.created: list[str] = []

    def empty(self) -> str:
        name = f"restored_{uuid.uuid4().hex[:12]}"
        if self.dialect == "sqlite":
            return f"sqlite:///{self.tmp_path / (name + '.db')}"
        self.created.append(name)
        return self.server.create_database(name)

    def drop_all(self) -> None:
        if not self.created:
            return
        admin = sa.create_engine(self.server.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in self.created:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _pg_clone(server, template: str) -> str:
    name = f"backup_wh_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse(request, tmp_path) -> Warehouse:
    staging = tmp_path / "staging"
    if request.param == "sqlite":
        golden = request.getfixturevalue("sqlite_golden")
        shutil.copytree(golden / "staging", staging)
        shutil.copy(golden / "wh.db", tmp_path / "wh.db")
        yield Warehouse("sqlite", f"sqlite:///{tmp_path / 'wh.db'}", staging)
        return
    server = request.getfixturevalue("postgres_server")
    golden = request.getfixturevalue("pg_golden")
    shutil.copytree(golden["staging"], staging)
    name = _pg_clone(server, golden["template"])
    yield Warehouse("postgresql", server.url_for(name), staging, server.password)
    databases = Databases("postgresql", tmp_path, server)
    databases.created.append(name)
    databases.drop_all()


@pytest.fixture
def sqlite_warehouse(request, tmp_path) -> Warehouse:
    golden = request.getfixturevalue("sqlite_golden")
    shutil.copytree(golden / "staging", tmp_path / "staging")
    shutil.copy(golden / "wh.db", tmp_path / "wh.db")
    return Warehouse("sqlite", f"sqlite:///{tmp_path / 'wh.db'}", tmp_path / "staging")


@pytest.fixture
def pg_warehouse(postgres_server, pg_golden, tmp_path) -> Warehouse:
    shutil.copytree(pg_golden["staging"], tmp_path / "staging")
    name = _pg_clone(postgres_server, pg_golden["template"])
    yield Warehouse("postgresql", postgres_server.url_for(name), tmp_path / "staging", postgres_server.password)
    databases = Databases("postgresql", tmp_path, postgres_server)
    databases.created.append(name)
    databases.drop_all()


@pytest.fixture
def pg_targets(postgres_server, tmp_path) -> Databases:
    databases = Databases("postgresql", tmp_path, postgres_server)
    yield databases
    databases.drop_all()


@pytest.fixture
def targets(request, warehouse, tmp_path) -> Databases:
    server = request.getfixturevalue("postgres_server") if warehouse.dialect == "postgresql" else None
    databases = Databases(warehouse.dialect, tmp_path, server)
    yield databases
    databases.drop_all()


# -- an independent view of a database's content --------------------------------------------------
def _canonical(value) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return f"{type(value).__name__}:{value}"


def content(url: str, exclude_run: str | None = None) -> dict[str, tuple[int, str]]:
    """{table: (rows, digest of the sorted rows)}: plain SQLAlchemy reads, no code shared with the stage."""
    engine = sa.create_engine(url)
    out = {}
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).mappings().all()
            if table == "etl_runs" and exclude_run:
                rows = [r for r in rows if r["run_id"] != exclude_run]
            lines = sorted("|".join(f"{k}={_canonical(v)}" for k, v in sorted(r.items())) for r in rows)
            out[table] = (len(rows), hashlib.sha256("\n".join(lines).encode()).hexdigest())
    engine.dispose()
    return out


def scalar(url: str, sql: str, **params):
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(sa.text(sql), params).scalar()
    engine.dispose()
    return value


def partitions(url: str) -> list[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        names = conn.execute(sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'biometric_readings'::regclass ORDER BY 1")).scalars().all()
    engine.dispose()
    return list(names)


class Tools:
    """What the tests use from here (with --import-mode=importlib, tests cannot import conftest)."""

    DAY, CUTOFF, DAYS, TABLES = DAY, CUTOFF, DAYS, TABLES
    backup = staticmethod(backup)
    content = staticmethod(content)
    scalar = staticmethod(scalar)
    partitions = staticmethod(partitions)


@pytest.fixture
def tools() -> type[Tools]:
    return Tools
