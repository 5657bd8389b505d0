"""Load: versioned schema, atomic and idempotent per-day loads, on SQLite and PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json

import pytest
import sqlalchemy as sa

from biometrics_testkit import sample
from biometrics_testkit.harness import run_stage, snapshot

DAY = dt.date(2026, 1, 5)
NEXT = dt.date(2026, 1, 6)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def urls(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}", f"sqlite:///{tmp_path / 'wh.db'}"
    server = request.getfixturevalue("postgres_server")
    name = f"load_{tmp_path.name[-20:].lower().replace('-', '_')}"
    return server.create_database(name + "_src"), server.create_database(name + "_wh")


def _stage_day(day, urls, staging, seed=1):
    sample.write_source(urls[0], sample.generate_day(day, users=60, readings_per_user=10, seed=seed).database,
                        replace=True)
    env = {"BIOMETRICS_DB_URL": urls[0], "BIOMETRICS_WAREHOUSE_URL": urls[1]}
    for stage in ("extract", "transform"):
        run_stage(stage, "readings", "--date", str(day), "--staging-path", str(staging), env=env)
    return env


def _load(day, staging, env):
    return run_stage("load", "readings", "--date", str(day), "--staging-path", str(staging), env=env).manifest


def _postgres_day(server, name, staging):
    """Source and warehouse databases load_<name>_src/_wh, and the day extracted and transformed
    into ``staging``: returns the (source, warehouse) URLs and the stages' environment."""
    urls = (server.create_database(f"load_{name}_src"), server.create_database(f"load_{name}_wh"))
    return urls, _stage_day(DAY, urls, staging)


def _readings_tables(engine) -> set[str]:
    """The readings' tables: the partitioned one, its partitions and any table a load left unattached."""
    with engine.connect() as conn:
        return set(conn.execute(sa.text(
            "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND relname LIKE 'biometric_readings%'"))
            .scalars())


def test_migrate_is_idempotent(urls):
    env = {"BIOMETRICS_WAREHOUSE_URL": urls[1]}
    migrated = run_stage("load", "migrate", env=env)
    first = migrated.manifest
    second = run_stage("load", "migrate", env=env).manifest
    # the migration's log says what it did, not which of Alembic's plugins it set up on the way
    assert "upgraded from empty to 0002" in migrated.stderr and "setup plugin" not in migrated.stderr
    assert first["details"]["revision_before"] is None and first["details"]["revision_after"] == "0002"
    assert second["details"]["revision_before"] == second["details"]["revision_after"] == "0002"
    tables = set(sa.inspect(sa.create_engine(urls[1])).get_table_names())
    assert {"biometric_readings", "daily_metrics", "etl_dead_letters", "etl_runs", "alembic_version"} <= tables


def test_the_known_head_revision_is_alembics_head():
    # a load skips Alembic when the warehouse is at HEAD_REVISION: a new migration must move it
    from biometrics_load import schema

    assert schema.HEAD_REVISION == schema.head_revision()


@pytest.mark.postgres
def test_concurrent_migrations_do_not_collide(postgres_server):
    url = postgres_server.create_database("load_concurrent")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: run_stage("load", "migrate", env={"BIOMETRICS_WAREHOUSE_URL": url},
                                                    check=False), range(3)))
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]


def test_rerun_replaces_the_day_and_leaves_other_days_alone(urls, tmp_path):
    env = _stage_day(DAY, urls, tmp_path / "d1")
    first = _load(DAY, tmp_path / "d1", env)
    env = _stage_day(NEXT, urls, tmp_path / "d2", seed=2)
    _load(NEXT, tmp_path / "d2", env)
    before = snapshot(urls[1], DAY)
    other = snapshot(urls[1], NEXT)
    again = _load(DAY, tmp_path / "d1", env)
    assert again["details"]["replaced_readings"] == first["details"]["readings"] > 0
    assert snapshot(urls[1], DAY) == before
    assert snapshot(urls[1], NEXT) == other
    engine = sa.create_engine(urls[1])
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM biometric_readings WHERE date = :d"), {"d": DAY}).scalar()
        runs = conn.execute(sa.text("SELECT stage, count(*) FROM etl_runs WHERE date = :d GROUP BY stage"),
                            {"d": DAY}).all()
    assert count == first["details"]["readings"]
    # each stage run is recorded once: extract and transform once, load twice
    assert dict(runs) == {"extract": 1, "transform": 1, "load": 2}


def test_dead_letter_history_survives_a_rerun(urls, tmp_path):
    env = _stage_day(DAY, urls, tmp_path)
    _load(DAY, tmp_path, env)
    engine = sa.create_engine(urls[1])
    with engine.begin() as conn:
        picked = conn.execute(sa.text("SELECT source, source_record_id, reason, created_at FROM etl_dead_letters "
                                      "WHERE date = :d ORDER BY source_record_id LIMIT 1"), {"d": DAY}).one()
        conn.execute(sa.text("UPDATE etl_dead_letters SET status = 'discarded' WHERE source_record_id = :i"),
                     {"i": picked.source_record_id})
    run_stage("transform", "readings", "--date", str(DAY), "--staging-path", str(tmp_path), env=env)
    _load(DAY, tmp_path, env)
    with engine.connect() as conn:
        status, created = conn.execute(sa.text(
            "SELECT status, created_at FROM etl_dead_letters WHERE source_record_id = :i AND reason = :r"),
            {"i": picked.source_record_id, "r": picked.reason}).one()
    assert status == "discarded" and created == picked.created_at


def test_the_letters_of_one_id_keep_their_own_history(urls, tmp_path):
    # the sample's fitco file gives reading_id 5900000 to two readings: two letters of one id and reason
    sample.write_vendor_files(tmp_path / "inbox", DAY, sample.generate_day(DAY, users=60, readings_per_user=10,
                                                                            seed=1).vendors)
    env = _stage_day(DAY, urls, tmp_path)
    _load(DAY, tmp_path, env)
    engine = sa.create_engine(urls[1])
    letter = ("FROM etl_dead_letters WHERE date = :d AND source = 'fitco' AND source_record_id = '5900000' "
              "AND CAST(record AS TEXT) LIKE :device")
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE etl_dead_letters SET status = 'discarded' WHERE id IN (SELECT id {letter})"),
                     {"d": DAY, "device": "%dev-repeat-a%"})
    run_stage("transform", "readings", "--date", str(DAY), "--staging-path", str(tmp_path), env=env)
    _load(DAY, tmp_path, env)
    with engine.connect() as conn:
        status = {device: conn.execute(sa.text(f"SELECT reason, status {letter}"), {"d": DAY, "device": f"%{device}%"})
                  .all() for device in ("dev-repeat-a", "dev-repeat-b")}
    assert status == {"dev-repeat-a": [("conflicting_reading_id", "discarded")],
                      "dev-repeat-b": [("conflicting_reading_id", "pending")]}


def test_identical_dead_letters_keep_their_own_histories(urls, tmp_path):
    """A vendor record sent three times: two identical duplicate letters. An operator discarded one;
    a rerun gave both the first one's status."""
    folder = tmp_path / "inbox" / "zeta" / str(DAY)
    folder.mkdir(parents=True)
    record = json.dumps({"reading_id": 77, "user_id": 1, "device_id": "z1", "metric_type": "spo2", "value": 97,
                         "unit": "percent", "created_at": "2026-01-05T08:00:00Z", "ingested_at": "2026-01-05T09:00:00Z"})
    (folder / "readings.jsonl").write_text((record + "\n") * 3)
    env = _stage_day(DAY, urls, tmp_path)
    _load(DAY, tmp_path, env)
    engine = sa.create_engine(urls[1])
    letters = "FROM etl_dead_letters WHERE date = :d AND source = 'zeta'"
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE etl_dead_letters SET status = 'discarded' WHERE id = (SELECT min(id) {letters})"),
                     {"d": DAY})
    for _ in range(2):
        _load(DAY, tmp_path, env)
        with engine.connect() as conn:
            statuses = conn.execute(sa.text(f"SELECT reason, status {letters} ORDER BY status"), {"d": DAY}).all()
        assert statuses == [("duplicate", "discarded"), ("duplicate", "pending")]
    engine.dispose()


def test_a_repeated_dead_letter_gives_a_rerun_its_first_history_once(urls, tmp_path):
    env = _stage_day(DAY, urls, tmp_path)
    loaded = _load(DAY, tmp_path, env)["details"]["dead_letters"]
    engine = sa.create_engine(urls[1])
    letters = sa.Table("etl_dead_letters", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        first = conn.execute(sa.select(letters).where(letters.c.date == DAY).order_by(letters.c.id).limit(1)
                             ).one()._asdict()
        # the queue has no unique key: the same letter can be in it twice, here a later, replayed copy
        later = {**first, "created_at": first["created_at"] + dt.timedelta(hours=1), "status": "replayed"}
        del later["id"]
        conn.execute(letters.insert(), later)
    again = _load(DAY, tmp_path, env)["details"]["dead_letters"]
    same_key = [letters.c[c] == first[c] for c in ("date", "stage", "source", "reason", "source_record_id")]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(letters.c.status, letters.c.created_at).where(*same_key)).all()
        total = conn.execute(sa.select(sa.func.count()).select_from(letters).where(letters.c.date == DAY)).scalar()
    assert again == loaded == total
    assert rows == [("pending", first["created_at"])]


@pytest.mark.postgres
def test_postgres_days_are_partitions(postgres_server, tmp_path):
    urls, env = _postgres_day(postgres_server, "parts", tmp_path)
    _load(DAY, tmp_path, env)
    _load(DAY, tmp_path, env)
    engine = sa.create_engine(urls[1])
    with engine.connect() as conn:
        parts = conn.execute(sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'biometric_readings'::regclass")).all()
        checks = conn.execute(sa.text("SELECT count(*) FROM pg_constraint WHERE contype = 'c' AND "
                                      "conrelid = 'biometric_readings_p20260105'::regclass")).scalar()
    assert parts == [("biometric_readings_p20260105", "FOR VALUES FROM ('2026-01-05') TO ('2026-01-06')")]
    assert checks == 0
    # the day's table was built with the warehouse's own indexes, so ATTACH adopted them and built none
    assert _partition_indexes(engine, "biometric_readings_p20260105") == {
        "biometric_readings_pkey": ["reading_id", "source", "date"],
        "ux_biometric_readings_natural_key": ["created_at", "user_id", "device_id", "metric_type", "date"]}
    with engine.connect() as conn:  # built with full leaf pages: the day is replaced whole, never updated
        options = conn.execute(sa.text("SELECT c.reloptions FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                       "WHERE i.indrelid = 'biometric_readings_p20260105'::regclass")).scalars().all()
    assert options == [["fillfactor=100"]] * 2


@pytest.mark.postgres
def test_postgres_load_leaves_statistics_of_the_tables_it_rewrote(postgres_server, tmp_path):
    urls, env = _postgres_day(postgres_server, "stats", tmp_path)
    details = _load(DAY, tmp_path, env)["details"]
    with sa.create_engine(urls[1]).connect() as conn:
        estimates = dict(conn.execute(sa.text(
            "SELECT relname, reltuples FROM pg_class WHERE relname IN ('daily_metrics', 'etl_dead_letters')")).all())
    # ANALYZE reads every page of tables this small, so its estimates are the rows the load wrote
    # (-1 would mean never analyzed)
    assert estimates == {"daily_metrics": details["daily_metrics"], "etl_dead_letters": details["dead_letters"]}
    assert details["dead_letters"] > 0


def _partition_indexes(engine, partition: str) -> dict[str, list[str]]:
    """The partition's indexes as {the partitioned index each belongs to (or None): its columns}."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT h.inhparent::regclass::text, array_agg(a.attname ORDER BY k.n) "
            "FROM pg_index i LEFT JOIN pg_inherits h ON h.inhrelid = i.indexrelid "
            "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = CAST(:p AS regclass) GROUP BY i.indexrelid, h.inhparent"), {"p": partition}).all()
    assert len({parent for parent, _ in rows}) == len(rows), rows  # one index per parent, none without
    return {parent: list(columns) for parent, columns in rows}


@pytest.mark.postgres
def test_migration_0002_reorders_the_natural_key_of_existing_days(postgres_server, tmp_path):
    from alembic import command

    from biometrics_load import schema

    urls, env = _postgres_day(postgres_server, "m2", tmp_path)  # staging the day leaves the warehouse alone
    engine = sa.create_engine(urls[1])
    config = schema._config()
    with engine.begin() as conn:  # a warehouse of revision 0001 with a day in it
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(sa.text("CREATE TABLE biometric_readings_p20260104 PARTITION OF biometric_readings "
                             "FOR VALUES FROM ('2026-01-04') TO ('2026-01-05')"))
        conn.execute(sa.text("INSERT INTO biometric_readings VALUES ('2026-01-04', 'database', 1, 7, 'd', "
                             "'heart_rate', 60, 'bpm', '2026-01-04 10:00Z', '2026-01-04 10:01Z')"))
    assert _partition_indexes(engine, "biometric_readings_p20260104")["ux_biometric_readings_natural_key"][0] == "user_id"

    migrated = run_stage("load", "migrate", env={"BIOMETRICS_WAREHOUSE_URL": urls[1]}).manifest
    _load(DAY, tmp_path, env)

    assert (migrated["details"]["revision_before"], migrated["details"]["revision_after"]) == ("0001", "0002")
    for day in ("20260104", "20260105"):
        assert _partition_indexes(engine, f"biometric_readings_p{day}")["ux_biometric_readings_natural_key"] == [
            "created_at", "user_id", "device_id", "metric_type", "date"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM biometric_readings_p20260104")).scalar() == 1
    engine.dispose()


@pytest.mark.postgres
def test_postgres_stores_the_same_instants_whatever_the_sessions_time_zone(postgres_server, tmp_path):
    # binary COPY sends instants, not text a session time zone could shift: a load whose session
    # runs at UTC+13:45 stores exactly what a UTC session stores
    src = postgres_server.create_database("load_tz_src")
    utc, far = postgres_server.create_database("load_tz_utc"), postgres_server.create_database("load_tz_far")
    env = _stage_day(DAY, (src, utc), tmp_path)
    _load(DAY, tmp_path, env)
    _load(DAY, tmp_path, {**env, "BIOMETRICS_WAREHOUSE_URL": far, "PGTZ": "Pacific/Chatham"})
    assert snapshot(far, DAY) == snapshot(utc, DAY)


@pytest.mark.postgres
def test_postgres_rows_are_loaded_frozen_and_a_bad_sort_memory_setting_exits_2(postgres_server, tmp_path):
    urls, env = _postgres_day(postgres_server, "frozen", tmp_path)
    _load(DAY, tmp_path, env)
    before = snapshot(urls[1])
    # COPY FREEZE: every page of the new partition is all-frozen in the visibility map, so no later
    # scan rewrites it to set hint bits and vacuum has nothing to freeze
    with sa.create_engine(urls[1]).begin() as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_visibility"))
        pages, frozen = conn.execute(sa.text(
            "SELECT pg_relation_size('biometric_readings_p20260105') / current_setting('block_size')::int, "
            "all_frozen FROM pg_visibility_map_summary('biometric_readings_p20260105')")).one()
    assert pages > 0 and frozen == pages

    refused = run_stage("load", "readings", "--date", str(DAY), "--staging-path", str(tmp_path),
                        env={**env, "BIOMETRICS_LOAD_MAINTENANCE_WORK_MEM": "lots"}, check=False)
    assert refused.returncode == 2
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith("biometrics-load: error: BIOMETRICS_LOAD_MAINTENANCE_WORK_MEM='lots' is not a "
                            "PostgreSQL memory size")
    assert snapshot(urls[1]) == before


@pytest.mark.postgres
def test_a_killed_loads_table_is_dropped_by_the_next_load_of_its_day(postgres_server, tmp_path):
    urls, env = _postgres_day(postgres_server, "left", tmp_path)
    _load(DAY, tmp_path, env)
    engine = sa.create_engine(urls[1])
    with engine.begin() as conn:  # what a load killed between its build and its swap leaves behind
        conn.execute(sa.text("CREATE TABLE biometric_readings_p20260105_0123456789 (LIKE biometric_readings)"))
        conn.execute(sa.text("CREATE TABLE biometric_readings_p20260106_0123456789 (LIKE biometric_readings)"))
        conn.execute(sa.text("CREATE TABLE biometric_readings_p20260105_notes (note text)"))

    _load(DAY, tmp_path, env)

    tables = _readings_tables(engine)
    engine.dispose()
    # the day's leftover is gone; another day's and a table that is not a load's are not touched
    assert tables == {"biometric_readings", "biometric_readings_p20260105", "biometric_readings_p20260106_0123456789",
                      "biometric_readings_p20260105_notes"}


@pytest.mark.postgres
def test_two_loads_of_the_same_day_at_once_leave_one_day(postgres_server, tmp_path):
    urls, env = _postgres_day(postgres_server, "twice", tmp_path)
    _load(DAY, tmp_path, env)
    expected = snapshot(urls[1], DAY)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        manifests = list(pool.map(lambda _: _load(DAY, tmp_path, env), range(2)))

    assert [m["details"]["replaced_readings"] for m in manifests] == [expected["biometric_readings"][0]] * 2
    assert snapshot(urls[1], DAY) == expected


@pytest.mark.postgres
def test_a_duplicate_natural_key_fails_the_load_and_leaves_the_day_and_no_table_behind(postgres_server, tmp_path):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    urls, env = _postgres_day(postgres_server, "dup", tmp_path)
    _load(DAY, tmp_path, env)
    before = snapshot(urls[1])
    # the staged day gains a second reading of one (user, device, metric, instant) under a new id
    (clean,) = (tmp_path / "transform" / "readings").glob("*.parquet")
    table = pq.read_table(clean)
    twin = table.slice(0, 1)
    twin = twin.set_column(twin.schema.get_field_index("reading_id"), "reading_id",
                           pc.add(twin.column("reading_id"), pa.scalar(10**9, pa.int64())))
    pq.write_table(pa.concat_tables([table, twin]), clean)
    _manifest_says(tmp_path, rows_out=lambda n: n + 1)  # tampered with consistently: the key is the guard here

    failed = run_stage("load", "readings", "--date", str(DAY), "--staging-path", str(tmp_path), env=env, check=False)

    assert failed.returncode == 1
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith("biometrics-load: error: database error:") and "natural_key" in error, error
    # no reading's values in the log: PostgreSQL's DETAIL quotes the key's
    assert "already exists" not in failed.stderr and "Key (" not in failed.stderr
    assert "left out: it may quote a row's values" in error
    assert snapshot(urls[1]) == before
    engine = sa.create_engine(urls[1])
    tables = _readings_tables(engine)
    engine.dispose()
    # the indexed-but-refused table of the failed load is gone
    assert tables == {"biometric_readings", "biometric_readings_p20260105"}


def _manifest_says(staging, **changes):
    """Edit the transform's manifest in staging: each change a value or a function of the old one."""
    path = staging / "manifests" / "transform-readings.json"
    manifest = json.loads(path.read_text())
    for key, change in changes.items():
        manifest[key] = change(manifest[key]) if callable(change) else change
    path.write_text(json.dumps(manifest))


def _sqlite_day(tmp_path):
    urls = (f"sqlite:///{tmp_path / 'app.db'}", f"sqlite:///{tmp_path / 'wh.db'}")
    staging = tmp_path / "staging"
    env = _stage_day(DAY, urls, staging)
    _load(DAY, staging, env)
    return urls, staging, env, snapshot(urls[1])


def _refused(staging, env) -> str:
    failed = run_stage("load", "readings", "--date", str(DAY), "--staging-path", str(staging), env=env, check=False)
    assert failed.returncode == 2, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert "Traceback" not in failed.stderr
    return lines[-1]


def test_staged_files_changed_after_the_transform_are_refused_before_the_warehouse(tmp_path):
    import pyarrow.parquet as pq

    urls, staging, env, before = _sqlite_day(tmp_path)
    (part,) = (staging / "transform" / "dead_letters").glob("*.parquet")
    table = pq.read_table(part)
    pq.write_table(table.slice(0, 0), part)  # emptied: the load would have replaced the day's letters by none
    assert "the staged dead letters have 0 rows, the transform wrote" in _refused(staging, env)
    pq.write_table(table, part)
    for readings in (staging / "transform" / "readings").glob("*.parquet"):
        readings.unlink()  # every part gone, the folder left
    assert "the staged readings have 0 rows" in _refused(staging, env)
    assert snapshot(urls[1]) == before


def test_staged_rows_of_another_day_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    urls, staging, env, before = _sqlite_day(tmp_path)
    (part,) = (staging / "transform" / "daily_metrics").glob("*.parquet")
    table = pq.read_table(part)
    dates = pa.array([DAY - dt.timedelta(days=1)] * table.num_rows, table.schema.field("date").type)
    pq.write_table(table.set_column(table.schema.get_field_index("date"), "date", dates), part)
    assert _refused(staging, env).endswith(f"the staged daily metrics hold rows of 2026-01-04, not {DAY}: "
                                           "the staging path holds another day's files")
    assert snapshot(urls[1]) == before


@pytest.mark.parametrize("manifest", [None, "[]", "null"])
def test_the_transforms_manifest_is_required(tmp_path, manifest):
    urls, staging, env, before = _sqlite_day(tmp_path)
    path = staging / "manifests" / "transform-readings.json"
    if manifest is None:
        path.unlink()
        assert "transform-readings.json: run biometrics-transform readings for 2026-01-05 first" in _refused(staging, env)
    else:
        path.write_text(manifest)
        assert "transform-readings.json is not a run manifest (a JSON object)" in _refused(staging, env)
    assert snapshot(urls[1]) == before


@pytest.mark.parametrize("damage,says", [
    (lambda path: path.write_bytes(path.read_bytes()[:-64]), "the staged daily metrics are not readable Parquet"),
    (lambda path: path.write_text("date,user_id\n"), "the staged daily metrics are not readable Parquet"),
    (lambda path: _rewrite(path, lambda t: t.drop_columns(["sum_value"])), "(sum_value missing)"),
    (lambda path: _rewrite(path, lambda t: t.set_column(t.schema.get_field_index("sample_count"), "sample_count",
                                                         t.column("sample_count").cast("string"))),
     "(sample_count text)"),
])
def test_damaged_staged_files_are_refused_in_one_line(tmp_path, damage, says):
    urls, staging, env, before = _sqlite_day(tmp_path)
    (part,) = (staging / "transform" / "daily_metrics").glob("*.parquet")
    damage(part)
    line = _refused(staging, env)
    assert says in line and line.endswith("rerun the transform"), line
    assert snapshot(urls[1]) == before


def _rewrite(path, change):
    import pyarrow.parquet as pq
    pq.write_table(change(pq.read_table(path)), path)


@pytest.mark.postgres
@pytest.mark.parametrize("log_level", ["INFO", "DEBUG"])
def test_a_refused_row_is_not_quoted_in_the_error_or_the_logs(postgres_server, tmp_path, log_level):
    """A COPY that a constraint refuses: the driver's own error (raised on its raw cursor) had
    reached the one-line error with PostgreSQL's DETAIL, the whole row: health data in task logs."""
    urls, env = _postgres_day(postgres_server, f"refused_{log_level.lower()}", tmp_path)
    run_stage("load", "migrate", env=env)
    engine = sa.create_engine(urls[1])
    with engine.begin() as conn:  # as a DBA might add one
        conn.execute(sa.text("ALTER TABLE daily_metrics ADD CONSTRAINT dba_no_heart_rate "
                             "CHECK (metric_type <> 'heart_rate') NOT VALID"))
    engine.dispose()
    result = run_stage("load", "readings", "--date", str(DAY), "--staging-path", str(tmp_path), "--log-level",
                       log_level, env=env, check=False)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and 'violates check constraint "dba_no_heart_rate"' in error[0], result.stderr
    assert "Failing row contains" not in result.stderr and "heart_rate, " not in result.stderr
    assert "left out: it may quote a row's values" in error[0]


@pytest.mark.postgres
def test_a_load_role_that_does_not_own_the_readings_is_refused_before_the_copy(postgres_server, tmp_path):
    """Swapping a day's partition in needs the partitioned table's owner: such a role copied and
    indexed the whole day, failed at the swap (exit 1) and left the built table behind."""
    urls, env = _postgres_day(postgres_server, "notowner", tmp_path)
    run_stage("load", "migrate", env=env)
    engine = sa.create_engine(urls[1], isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("DROP ROLE IF EXISTS load_notowner"))
        conn.execute(sa.text("CREATE ROLE load_notowner LOGIN PASSWORD 'notowner-pw'"))
        for grant in ("GRANT CREATE, USAGE ON SCHEMA public TO load_notowner",
                      "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO load_notowner",
                      "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO load_notowner"):
            conn.execute(sa.text(grant))
    role_url = sa.engine.make_url(urls[1]).set(username="load_notowner", password="notowner-pw")
    result = run_stage("load", "readings", "--date", str(DAY), "--staging-path", str(tmp_path), check=False,
                       env={**env, "BIOMETRICS_WAREHOUSE_URL": role_url.render_as_string(hide_password=False)})
    assert result.returncode == 2, result.stderr
    assert "does not own biometric_readings" in result.stderr and "copying readings" not in result.stderr
    assert _readings_tables(engine) == {"biometric_readings"}
    engine.dispose()


@pytest.mark.postgres
def test_a_member_of_the_owner_role_loads_partitions_the_owner_owns(postgres_server, tmp_path):
    """A day loaded by a member of the owner's role was that member's partition: the owner's next
    reload copied the whole day and failed at the swap, and its backup could not read the day."""
    urls, env = _postgres_day(postgres_server, "member", tmp_path)
    engine = sa.create_engine(urls[1], isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for role in ("load_member", "load_owner"):
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        conn.execute(sa.text("CREATE ROLE load_owner LOGIN PASSWORD 'owner-pw'"))
        conn.execute(sa.text("CREATE ROLE load_member LOGIN PASSWORD 'member-pw' IN ROLE load_owner"))
        conn.execute(sa.text(f"ALTER DATABASE {sa.engine.make_url(urls[1]).database} OWNER TO load_owner"))
        conn.execute(sa.text("ALTER SCHEMA public OWNER TO load_owner"))
    as_role = {role: sa.engine.make_url(urls[1]).set(username=role, password=f"{role.split('_')[1]}-pw")
               .render_as_string(hide_password=False) for role in ("load_owner", "load_member")}
    run_stage("load", "migrate", env={"BIOMETRICS_WAREHOUSE_URL": as_role["load_owner"]})
    for role in ("load_member", "load_owner"):
        _load(DAY, tmp_path, {**env, "BIOMETRICS_WAREHOUSE_URL": as_role[role]})
        with engine.connect() as conn:
            owner = conn.execute(sa.text("SELECT pg_get_userbyid(relowner) FROM pg_class "
                                         "WHERE relname = 'biometric_readings_p20260105'")).scalar()
        assert owner == "load_owner", role
    engine.dispose()


@pytest.mark.postgres
def test_an_operators_decision_committed_while_a_rerun_replaces_the_letters_is_kept(postgres_server, tmp_path):
    """The rerun copied the day's letters' history, then deleted them, each statement with its own
    snapshot: a status an operator committed in between was deleted without being kept. The
    operator's transaction here holds its updated row until the rerun is waiting on it."""
    import os
    import subprocess
    import time

    from biometrics_testkit.harness import script
    urls, env = _postgres_day(postgres_server, "decision", tmp_path)
    _load(DAY, tmp_path, env)
    engine = sa.create_engine(urls[1])
    with engine.connect() as operator:
        picked = operator.execute(sa.text("SELECT source_record_id, reason FROM etl_dead_letters WHERE date = :d "
                                          "ORDER BY source_record_id LIMIT 1"), {"d": DAY}).one()
        operator.execute(sa.text("UPDATE etl_dead_letters SET status = 'discarded', status_changed_at = now() "
                                 "WHERE source_record_id = :i AND reason = :r"),
                         {"i": picked.source_record_id, "r": picked.reason})
        rerun = subprocess.Popen([script("biometrics-load"), "readings", "--date", str(DAY), "--staging-path",
                                  str(tmp_path)], env={**os.environ, **env}, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        waiting, deadline = 0, time.monotonic() + 120
        # (outside a transaction: one keeps the first view of pg_stat_activity it took)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
            while not waiting and rerun.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
                waiting = watcher.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND wait_event = 'transactionid' AND query ILIKE '%DELETE FROM etl_dead_letters%'")).scalar()
        assert waiting, f"the rerun never waited for the operator's row (exit {rerun.poll()})"
        operator.commit()
    _stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT status FROM etl_dead_letters WHERE source_record_id = :i "
                                        "AND reason = :r"), {"i": picked.source_record_id, "r": picked.reason}
                                ).scalars().all()
    engine.dispose()
    assert statuses and set(statuses) == {"discarded"}



@pytest.mark.postgres
def test_a_load_swaps_its_day_in_only_after_a_backup_in_progress(postgres_server, tmp_path):
    """A day attached while a backup ran was counted by the backup's checksums (its rows are frozen)
    but left out of pg_dump's snapshot: the backup exited 0 and could never be restored. The test
    holds the partitions' lock shared, as a backup does from before its snapshot to its end."""
    import os
    import subprocess
    import time

    from biometrics_testkit.harness import script
    urls, env = _postgres_day(postgres_server, "during_backup", tmp_path)
    run_stage("load", "migrate", env=env)
    engine = sa.create_engine(urls[1], isolation_level="AUTOCOMMIT")
    with engine.connect() as backup:
        backup.execute(sa.text("SELECT pg_advisory_lock_shared(hashtext('biometrics_partitions'), 0)"))
        load = subprocess.Popen([script("biometrics-load"), "readings", "--date", str(DAY), "--staging-path",
                                 str(tmp_path)], env={**os.environ, **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        waiting, deadline = 0, time.monotonic() + 120
        while not waiting and load.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            waiting = backup.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                             "AND NOT granted AND objid = 0")).scalar()
        assert waiting == 1, f"the load did not wait for the backup (exit {load.poll()})"
        assert "biometric_readings_p20260105" not in _readings_tables(engine)
        backup.execute(sa.text("SELECT pg_advisory_unlock_shared(hashtext('biometrics_partitions'), 0)"))
    _stdout, stderr = load.communicate(timeout=300)
    assert load.returncode == 0, stderr
    assert "waiting for a backup of the warehouse to finish" in stderr
    assert "biometric_readings_p20260105" in _readings_tables(engine)
    engine.dispose()
