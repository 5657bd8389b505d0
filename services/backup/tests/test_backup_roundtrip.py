"""create + restore: a verified round trip on SQLite and PostgreSQL; damaged backups never reach the target."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

import biometrics_backup.dump_postgres as dump_postgres


def _create(warehouse, tools) -> dict:
    out = warehouse.backup("create", "--date", tools.DAY.isoformat(), "--staging-path", str(warehouse.staging))
    assert out.exit_code == 0, out.stderr
    if warehouse.password:
        assert warehouse.password not in out.stdout + out.stderr
    return out.manifest


def _location(warehouse, tools):
    return warehouse.staging / "backups" / tools.DAY.isoformat()


def _restore(warehouse, tools, target: str, *extra: str):
    return warehouse.backup("restore", "--date", tools.DAY.isoformat(), "--staging-path", str(warehouse.staging),
                            *extra, env={"BIOMETRICS_RESTORE_TARGET_URL": target})


def test_create_then_restore_into_an_empty_database(warehouse, targets, tools):
    before = tools.content(warehouse.url)
    assert set(tools.TABLES) <= set(before) and before["biometric_readings"][0] > 0
    run = _create(warehouse, tools)

    location = _location(warehouse, tools)
    assert run["outputs"] == [location.as_uri()]
    manifest = json.loads((location / "manifest.json").read_text())
    dump = location / manifest["dump"]
    assert sorted(p.name for p in location.iterdir()) == sorted([dump.name, "manifest.json"])
    assert manifest["files"] == {dump.name: {"bytes": dump.stat().st_size,
                                             "sha256": hashlib.sha256(dump.read_bytes()).hexdigest()}}
    assert dump.read_bytes()[:5] == (b"PGDMP" if warehouse.dialect == "postgresql" else b"SQLit")
    # the manifest describes the warehouse as it was; the run recorded itself in etl_runs afterwards
    assert {t: v["rows"] for t, v in manifest["tables"].items() if t in tools.TABLES} == \
        {t: before[t][0] for t in tools.TABLES}
    assert tools.scalar(warehouse.url, "SELECT status FROM etl_runs WHERE run_id = :r", r=run["run_id"]) == "success"
    assert tools.content(warehouse.url, exclude_run=run["run_id"]) == before

    target = targets.empty()
    restored = _restore(warehouse, tools, target)
    assert restored.exit_code == 0, restored.stderr
    assert restored.manifest["rows_out"] == sum(v["rows"] for v in manifest["tables"].values())
    # compared independently of the stage's own checksums: every row of every table
    assert tools.content(target) == before
    if warehouse.dialect == "postgresql":
        assert len(tools.partitions(target)) == len(tools.DAYS)
        assert tools.partitions(target) == tools.partitions(warehouse.url)
        assert warehouse.password not in restored.stdout + restored.stderr


@pytest.mark.postgres
def test_password_never_in_a_command_line(pg_warehouse, pg_targets, tools, monkeypatch):
    """pg_dump and pg_restore get the password from the environment, never from argv."""
    seen: list[list[str]] = []
    real_popen = subprocess.Popen

    def popen(argv, *args, **kwargs):  # subprocess.run goes through Popen too
        seen.append(list(argv))
        return real_popen(argv, *args, **kwargs)

    monkeypatch.setattr(dump_postgres.subprocess, "Popen", popen)
    _create(pg_warehouse, tools)
    restored = _restore(pg_warehouse, tools, pg_targets.empty())
    assert restored.exit_code == 0, restored.stderr
    assert [argv[0].rsplit("/", 1)[-1] for argv in seen] == ["pg_dump", "pg_restore"], seen
    assert not any(pg_warehouse.password in arg for argv in seen for arg in argv)


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "delete"])
def test_damaged_dump_is_refused_and_the_target_untouched(warehouse, targets, tools, damage):
    _create(warehouse, tools)
    manifest = json.loads((_location(warehouse, tools) / "manifest.json").read_text())
    dump = _location(warehouse, tools) / manifest["dump"]
    data = bytearray(dump.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        del data[-100:]
    dump.write_bytes(bytes(data))
    if damage == "delete":
        dump.unlink()
    target = targets.empty()
    out = _restore(warehouse, tools, target)
    assert out.exit_code == 1
    assert {"flip a byte": "SHA-256", "truncate": "bytes", "delete": "missing"}[damage] in out.error_line
    assert "nothing was restored" in out.error_line
    if warehouse.dialect == "sqlite":
        assert not (targets.tmp_path / target.rsplit("/", 1)[-1]).exists()  # not even created
    assert tools.content(target) == {}  # no table was created


def test_restore_verifies_every_table_against_the_manifest(warehouse, targets, tools):
    _create(warehouse, tools)
    path = _location(warehouse, tools) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["tables"]["daily_metrics"]["checksum"] = "12345"
    manifest["tables"]["etl_runs"]["rows"] += 1
    path.write_text(json.dumps(manifest))
    out = _restore(warehouse, tools, targets.empty())
    assert out.exit_code == 1
    assert "daily_metrics: content checksum differs" in out.error_line
    assert "etl_runs:" in out.error_line and "rows, expected" in out.error_line


def test_a_manifest_that_is_not_an_object_exits_2(warehouse, targets, tools):
    _create(warehouse, tools)
    (_location(warehouse, tools) / "manifest.json").write_text("[]")
    out = _restore(warehouse, tools, targets.empty())
    assert out.exit_code == 2
    assert "is not a biometrics" in out.error_line and "(not a JSON object)" in out.error_line


def test_non_empty_target_needs_force(warehouse, tools):
    before = tools.content(warehouse.url)
    run = _create(warehouse, tools)
    # the warehouse itself is a non-empty target (it now also holds the backup run's own row)
    refused = warehouse.backup("restore", "--from", str(_location(warehouse, tools)), "--target-url", warehouse.url)
    assert refused.exit_code == 2
    assert "is not empty" in refused.error_line and "--force" in refused.error_line
    assert tools.scalar(warehouse.url, "SELECT count(*) FROM etl_runs WHERE run_id = :r", r=run["run_id"]) == 1
    forced = warehouse.backup("restore", "--from", _location(warehouse, tools).as_uri(), "--target-url",
                              warehouse.url, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert tools.content(warehouse.url) == before
    # the tables it set aside are dropped, not the target's extra tables
    assert "extra_tables" not in json.loads(forced.stdout.strip().splitlines()[-1])["details"]
    assert "tables the backup does not" not in forced.stderr
    if warehouse.password:
        assert warehouse.password not in refused.stderr + forced.stdout + forced.stderr


def test_restore_usage_errors(sqlite_warehouse, tools, tmp_path):
    wh = sqlite_warehouse
    day = tools.DAY.isoformat()
    nothing = wh.backup("restore", env={"BIOMETRICS_RESTORE_TARGET_URL": f"sqlite:///{tmp_path / 'r.db'}"})
    assert nothing.exit_code == 2 and "--from" in nothing.error_line
    missing = wh.backup("restore", "--date", day, "--staging-path", str(wh.staging),
                        env={"BIOMETRICS_RESTORE_TARGET_URL": f"sqlite:///{tmp_path / 'r.db'}"})
    assert missing.exit_code == 2 and "manifest.json" in missing.error_line
    assert _create(wh, tools)["status"] == "success"
    no_target = wh.backup("restore", "--date", day, "--staging-path", str(wh.staging))
    assert no_target.exit_code == 2 and "BIOMETRICS_RESTORE_TARGET_URL" in no_target.error_line
    other = wh.backup("restore", "--date", day, "--staging-path", str(wh.staging), "--target-url",
                      "postgresql://someone:hunter2-secret@127.0.0.1:1/wh")
    assert other.exit_code == 2 and "sqlite backup" in other.error_line
    assert "hunter2-secret" not in other.stdout + other.stderr
    bad_date = wh.backup("create", "--date", "2026-13-01", "--staging-path", str(wh.staging))
    assert bad_date.exit_code == 2 and "--date" in bad_date.error_line


def test_create_without_a_warehouse_is_a_configuration_error(tmp_path, tools):
    missing = tools.backup("create", "--date", tools.DAY.isoformat(), "--staging-path", str(tmp_path),
                           env={"BIOMETRICS_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'nope.db'}"})
    assert missing.exit_code == 2 and "does not exist" in missing.error_line
    unset = tools.backup("create", "--date", tools.DAY.isoformat(), "--staging-path", str(tmp_path),
                         env={"BIOMETRICS_WAREHOUSE_URL": ""})
    assert unset.exit_code == 2 and "BIOMETRICS_WAREHOUSE_URL" in unset.error_line
    assert not (tmp_path / "backups").exists()


@pytest.mark.postgres
def test_wrong_password_is_exit_2_without_the_password(pg_warehouse, pg_targets, tools):
    wh, wrong = pg_warehouse, "wrong-Pa55word-xyz"

    def with_wrong_password(url: str) -> str:
        bad = url.replace(f":{wh.password}@", f":{wrong}@")
        assert wrong in bad
        return bad

    created = wh.backup("create", "--date", tools.DAY.isoformat(), "--staging-path", str(wh.staging),
                        env={"BIOMETRICS_WAREHOUSE_URL": with_wrong_password(wh.url)})
    assert created.exit_code == 2
    assert "cannot connect to the warehouse" in created.error_line
    assert wrong not in created.stdout + created.stderr
    assert not (wh.staging / "backups").exists()

    _create(wh, tools)
    target = pg_targets.empty()
    bad_target = with_wrong_password(target)
    from_env = _restore(wh, tools, bad_target)
    from_argument = _restore(wh, tools, "", "--target-url", bad_target)
    for out in (from_env, from_argument):
        assert out.exit_code == 2, out.stderr
        assert "cannot connect to the restore target" in out.error_line
        assert wrong not in out.stdout + out.stderr
        assert wh.password not in out.stdout + out.stderr
    assert tools.content(target) == {}


@pytest.mark.postgres
def test_writes_during_the_dump_are_in_neither_the_dump_nor_the_manifest(pg_warehouse, pg_targets, tools,
                                                                          monkeypatch):
    """pg_dump and the checksums share one exported snapshot: a write committed meanwhile is in neither."""
    import sqlalchemy as sa

    import biometrics_backup.checksums as checksums

    before = tools.content(pg_warehouse.url)
    real_sums = checksums.postgres_table_sums

    def write_then_sum(conn, only=None, skip=None):
        engine = sa.create_engine(pg_warehouse.url)
        with engine.begin() as other:
            other.execute(sa.text(
                "INSERT INTO etl_dead_letters (date, stage, source, record, reason, created_at) "
                "VALUES (:d, 'test', 'concurrent', '{}', 'written during the dump', now())"), {"d": tools.DAY})
        engine.dispose()
        return real_sums(conn, only, skip)

    monkeypatch.setattr(checksums, "postgres_table_sums", write_then_sum)
    run = _create(pg_warehouse, tools)
    manifest = json.loads((_location(pg_warehouse, tools) / "manifest.json").read_text())
    assert manifest["tables"]["etl_dead_letters"]["rows"] == before["etl_dead_letters"][0]
    assert tools.scalar(pg_warehouse.url, "SELECT count(*) FROM etl_dead_letters") == before["etl_dead_letters"][0] + 1
    assert run["status"] == "success"
    target = pg_targets.empty()
    restored = _restore(pg_warehouse, tools, target)
    assert restored.exit_code == 0, restored.stderr
    assert tools.content(target) == before


@pytest.mark.parametrize("failure", ["not an archive", "differs from the manifest"])
def test_a_forced_restore_that_fails_leaves_the_target_as_it_was(pg_warehouse, tools, failure):
    _create(pg_warehouse, tools)
    before = tools.content(pg_warehouse.url)
    location = _location(pg_warehouse, tools)
    manifest = json.loads((location / "manifest.json").read_text())
    if failure == "not an archive":  # the checksums made to match, so only pg_restore finds out
        dump = location / manifest["dump"]
        dump.write_bytes(b"\x00" * 5000)
        manifest["files"][manifest["dump"]] = {"bytes": 5000, "sha256": hashlib.sha256(dump.read_bytes()).hexdigest()}
    else:  # restored whole, then found to differ from what the backup says it holds
        manifest["tables"]["daily_metrics"]["checksum"] = "12345"
    (location / "manifest.json").write_text(json.dumps(manifest))
    out = pg_warehouse.backup("restore", "--from", str(location), "--target-url", pg_warehouse.url, "--force")
    assert out.exit_code == 1, out.stderr
    assert out.error_line.startswith("biometrics-backup: error: the target's tables were put back as they were: ")
    assert {"not an archive": "pg_restore failed", "differs from the manifest": "differs from the backup"}[failure] \
        in out.error_line
    assert tools.content(pg_warehouse.url) == before
    assert tools.scalar(pg_warehouse.url, "SELECT count(*) FROM pg_namespace WHERE nspname = :s",
                        s=dump_postgres.ASIDE_SCHEMA) == 0


def test_a_database_error_while_verifying_a_restore_keeps_its_exit_code(pg_warehouse, tools, monkeypatch):
    """A role refused a read of the restored tables (42501): exit 2, as everywhere else, the target's
    tables put back; the restore's own wrapper had made every database error exit 1."""
    import sqlalchemy as sa
    _create(pg_warehouse, tools)
    before = tools.content(pg_warehouse.url)
    _sql(pg_warehouse.url, "DROP ROLE IF EXISTS verify_nobody", "CREATE ROLE verify_nobody")

    def refused_sums(engine, tables):
        with engine.connect() as conn:
            conn.execute(sa.text("SET ROLE verify_nobody"))
            conn.execute(sa.text("SELECT count(*) FROM daily_metrics"))
        raise AssertionError("the read was not refused")

    monkeypatch.setattr(dump_postgres, "table_sums", refused_sums)
    out = _restore(pg_warehouse, tools, pg_warehouse.url, "--force")
    assert out.exit_code == 2, out.stderr
    assert out.error_line == ("biometrics-backup: error: the target's tables were put back as they were: "
                              "database error: permission denied for table daily_metrics"), out.error_line
    assert tools.content(pg_warehouse.url) == before


def test_a_backup_filed_under_another_day_is_refused(warehouse, targets, tools):
    import datetime as dt
    import shutil
    _create(warehouse, tools)
    other = tools.DAY + dt.timedelta(days=1)
    shutil.copytree(_location(warehouse, tools), warehouse.staging / "backups" / other.isoformat())
    target = targets.empty()
    out = warehouse.backup("restore", "--date", other.isoformat(), "--staging-path", str(warehouse.staging),
                           env={"BIOMETRICS_RESTORE_TARGET_URL": target})
    assert out.exit_code == 2 and f"is the backup of {tools.DAY}, not of {other}" in out.error_line, out.stderr
    assert tools.content(target) == {}
    # named with --from, the backup is still checked against --date
    out = warehouse.backup("restore", "--date", other.isoformat(), "--from", str(_location(warehouse, tools)),
                           env={"BIOMETRICS_RESTORE_TARGET_URL": target})
    assert out.exit_code == 2 and f"is the backup of {tools.DAY}, not of {other}" in out.error_line, out.stderr
    assert tools.content(target) == {}


def _tampered_checksum(warehouse, tools):
    location = _location(warehouse, tools)
    manifest = json.loads((location / "manifest.json").read_text())
    manifest["tables"]["daily_metrics"]["checksum"] = "12345"
    (location / "manifest.json").write_text(json.dumps(manifest))
    return location


def _sql(url: str, *statements: str) -> None:
    import sqlalchemy as sa
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def test_a_backup_that_differs_from_its_manifest_leaves_any_target_as_it_was(warehouse, targets, tools):
    """SQLite compares the dump's tables before the dump replaces the target (a forced restore had
    lost the target's own tables); an empty PostgreSQL target has the restored tables dropped again
    (they had stayed, unverified, after exit 1, and a second try was refused as 'not empty')."""
    _create(warehouse, tools)
    location = _tampered_checksum(warehouse, tools)
    empty = targets.empty()
    out = warehouse.backup("restore", "--from", str(location), env={"BIOMETRICS_RESTORE_TARGET_URL": empty})
    assert out.exit_code == 1 and "daily_metrics: content checksum differs" in out.error_line, out.stderr
    assert tools.content(empty) == {}
    occupied = targets.empty()
    _sql(occupied, "CREATE TABLE precious (a integer)", "INSERT INTO precious VALUES (1)")
    before = tools.content(occupied)
    out = warehouse.backup("restore", "--from", str(location), "--force",
                           env={"BIOMETRICS_RESTORE_TARGET_URL": occupied})
    assert out.exit_code == 1 and "daily_metrics: content checksum differs" in out.error_line, out.stderr
    assert tools.content(occupied) == before


def test_a_forced_restore_into_a_target_without_the_backups_tables(pg_warehouse, pg_targets, tools):
    """Nothing to set aside: no empty aside schema is left behind, which the next forced restore had
    taken for an interrupted one (exit 2 from then on)."""
    before = tools.content(pg_warehouse.url)
    _create(pg_warehouse, tools)
    target = pg_targets.empty()
    _sql(target, "CREATE TABLE notes (a integer)")
    for _ in range(2):
        out = _restore(pg_warehouse, tools, target, "--force")
        assert out.exit_code == 0, out.stderr
        assert out.manifest["details"]["extra_tables"] == ["notes"]
        assert tools.scalar(target, "SELECT count(*) FROM pg_namespace WHERE nspname = :s",
                            s=dump_postgres.ASIDE_SCHEMA) == 0
    assert {t: v for t, v in tools.content(target).items() if t != "notes"} == before


def test_a_backup_of_a_database_without_the_warehouse_tables_is_refused(warehouse, targets, tools):
    """A mistyped URL or an unmigrated warehouse: the day's good backup is kept, not replaced by an empty one."""
    _create(warehouse, tools)
    location = _location(warehouse, tools)
    kept = {p.name: p.read_bytes() for p in location.iterdir()}
    empty = targets.empty()
    if warehouse.dialect == "sqlite":  # an existing file (one that does not exist is refused already)
        _sql(empty, "SELECT 1")
    out = warehouse.backup("create", "--date", tools.DAY.isoformat(), "--staging-path", str(warehouse.staging),
                           env={"BIOMETRICS_WAREHOUSE_URL": empty})
    assert out.exit_code == 2 and "has no table" in out.error_line and "biometrics-load migrate" in out.error_line
    assert {p.name: p.read_bytes() for p in location.iterdir()} == kept


def test_a_table_a_load_was_building_is_not_backed_up(pg_warehouse, pg_targets, tools):
    """A killed load's unattached table (or another day's load in progress) is not the warehouse's: it
    was dumped, listed in the manifest and restored as a table of its own."""
    before = tools.content(pg_warehouse.url)
    _sql(pg_warehouse.url, "CREATE TABLE biometric_readings_p20260409_0123456789 (LIKE biometric_readings)",
         "INSERT INTO biometric_readings_p20260409_0123456789 SELECT * FROM biometric_readings LIMIT 5")
    run = _create(pg_warehouse, tools)
    manifest = json.loads((_location(pg_warehouse, tools) / "manifest.json").read_text())
    assert "biometric_readings_p20260409_0123456789" not in manifest["tables"]
    assert run["details"]["tables"].keys() == manifest["tables"].keys()
    target = pg_targets.empty()
    assert _restore(pg_warehouse, tools, target).exit_code == 0
    assert tools.content(target) == before


def test_pg_dump_and_pg_restore_get_no_other_secret(monkeypatch):
    """Their environment (/proc/<pid>/environ) had every secret of the stage's."""
    for name, value in {"AWS_SECRET_ACCESS_KEY": "s3-secret", "AWS_SESSION_TOKEN": "s3-token",
                        "BIOMETRICS_DB_URL": "postgresql://u:app-secret@h/app",
                        "BIOMETRICS_RESTORE_TARGET_URL": "postgresql://u:target-secret@h/t"}.items():
        monkeypatch.setenv(name, value)
    env = dump_postgres._env("postgresql+psycopg2://loader:wh-secret@127.0.0.1:5432/wh")
    assert env["PGPASSWORD"] == "wh-secret" and env["PGUSER"] == "loader" and env["PGDATABASE"] == "wh"
    assert not {"s3-secret", "s3-token", "postgresql://u:app-secret@h/app",
                "postgresql://u:target-secret@h/t"} & set(env.values())


def test_a_client_tool_failure_names_its_error_not_the_statement(tmp_path):
    log = tmp_path / "pg_restore.log"
    log.write_text("pg_restore: while PROCESSING TOC:\n"
                   "pg_restore: error: could not execute query: ERROR:  permission denied for schema public\n"
                   "Command was: CREATE TABLE public.alembic_version (\n    version_num character varying(32) NOT NULL\n);\n")
    failure = dump_postgres._failure("pg_restore", 1, log, "postgresql+psycopg2://u:pw@h/db")
    assert "permission denied for schema public" in str(failure) and "version_num" not in str(failure)


def test_a_forced_restore_refuses_to_drop_what_depends_on_the_replaced_tables(pg_warehouse, pg_targets, tools):
    """A view on a replaced table went with the set-aside table's DROP … CASCADE, exit 0, without a word."""
    _create(pg_warehouse, tools)
    target = pg_targets.empty()
    _sql(target, "CREATE TABLE daily_metrics (user_id bigint, value float)",
         "CREATE VIEW dashboard AS SELECT user_id, avg(value) FROM daily_metrics GROUP BY 1")
    before = tools.content(target)
    out = _restore(pg_warehouse, tools, target, "--force")
    assert out.exit_code == 2 and "would drop what depends on" in out.error_line and "view dashboard" in out.error_line
    assert tools.content(target) == before
    assert tools.scalar(target, "SELECT count(*) FROM pg_views WHERE viewname = 'dashboard'") == 1
    assert tools.scalar(target, "SELECT count(*) FROM pg_namespace WHERE nspname = :s", s=dump_postgres.ASIDE_SCHEMA) == 0


@pytest.mark.postgres
def test_a_second_backup_of_the_day_waits_for_the_first_to_publish(pg_warehouse, pg_targets, tools):
    """Two backups of one day at once, on S3: one's publish could delete the dump that the other's
    manifest, uploaded after it, named. They now take turns on the day's backup lock, which this
    test holds as a first backup would."""
    import os
    import time

    import sqlalchemy as sa

    from biometrics_testkit.harness import script

    engine = sa.create_engine(pg_warehouse.url, isolation_level="AUTOCOMMIT")
    key = {"day": tools.DAY.toordinal()}
    with engine.connect() as first:
        first.execute(sa.text("SELECT pg_advisory_lock(hashtext('biometrics_backup'), :day)"), key)
        second = subprocess.Popen([script("biometrics-backup"), "create", "--date", tools.DAY.isoformat(),
                                   "--staging-path", str(pg_warehouse.staging)],
                                  env={**os.environ, **pg_warehouse.env}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        waiting, deadline = 0, time.monotonic() + 60
        while not waiting and second.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            waiting = first.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                            "AND NOT granted AND objid::bigint = :day"), key).scalar()
        assert waiting == 1, f"the second backup did not wait (exit {second.poll()})"
        assert not (_location(pg_warehouse, tools) / "manifest.json").exists()
        first.execute(sa.text("SELECT pg_advisory_unlock(hashtext('biometrics_backup'), :day)"), key)
    engine.dispose()
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    assert f"waiting for another backup of {tools.DAY}" in stderr
    target = pg_targets.empty()
    assert _restore(pg_warehouse, tools, target).exit_code == 0


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["create", "purge"])
def test_a_backup_and_a_purge_wait_for_a_partition_swap_in_progress(pg_warehouse, pg_targets, tools, command):
    """A load's swap (or a purge's drop) that committed after a backup's snapshot had the backup's
    checksums count what pg_dump left out, and a DETACH queued between the backup's session and
    pg_dump held both up until its lock timeout. The test holds the partitions' lock as a load does
    while it swaps its day in."""
    import os
    import time

    import sqlalchemy as sa

    from biometrics_testkit.harness import script

    engine = sa.create_engine(pg_warehouse.url)
    with engine.connect() as load:
        load.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('biometrics_partitions'), 0)"))
        other = subprocess.Popen([script("biometrics-backup"), command, "--date", tools.DAY.isoformat(),
                                  "--staging-path", str(pg_warehouse.staging)],
                                 env={**os.environ, **pg_warehouse.env}, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        waiting, deadline = 0, time.monotonic() + 120
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
            while not waiting and other.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
                waiting = watcher.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                                  "AND NOT granted AND objid = 0")).scalar()
        assert waiting == 1, f"{command} did not wait for the swap (exit {other.poll()})"
        assert not (_location(pg_warehouse, tools) / "manifest.json").exists()
        load.commit()
    engine.dispose()
    _stdout, stderr = other.communicate(timeout=300)
    assert other.returncode == 0, stderr
    if command == "create":
        assert "waiting for a load or purge to finish changing the readings' partitions" in stderr
        assert _restore(pg_warehouse, tools, pg_targets.empty()).exit_code == 0
    else:
        assert "waiting for a backup of the warehouse to finish" in stderr
