"""The shared CLI: exit codes, one-line errors, no secrets, the manifest on stdout."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from biometrics_core import settings
from biometrics_core.cli import stage_command, stage_group
from biometrics_core.errors import ConfigError, DataQualityError, InputError
from biometrics_core.redact import redact

group = stage_group("demo", "A stage for tests.")


@stage_command(group, "run", help="Do a thing.")
@click.option("--fail-with", default=None)
def run(run, fail_with):
    run.manifest.rows_in = 10
    run.manifest.reject("out_of_range", 2)
    run.manifest.rows_out = 8
    if fail_with == "config":
        raise ConfigError("BIOMETRICS_WAREHOUSE_URL is not set")
    if fail_with == "input":
        raise InputError("missing staging input x")
    if fail_with == "quality":
        run.manifest.details["checks"] = [{"name": "volume", "passed": False}]
        raise DataQualityError("data-quality check(s) failed: volume")
    if fail_with == "crash":
        raise RuntimeError("postgresql://etl:hunter22@db/x went away\nsecond line")
    return run.manifest


def invoke(*args):
    return CliRunner().invoke(group, list(args))


def test_success_prints_one_manifest_line_and_stores_it(tmp_path):
    result = invoke("run", "--date", "2026-01-05", "--staging-path", str(tmp_path))
    assert result.exit_code == 0
    manifest = json.loads(result.stdout.strip().splitlines()[-1])
    assert manifest["stage"] == "demo" and manifest["date"] == "2026-01-05"
    assert manifest["rows_rejected"] == {"out_of_range": 2} and manifest["error_rate"] == 0.2
    assert json.loads((tmp_path / "manifests" / "demo-run.json").read_text())["run_id"] == manifest["run_id"]


@pytest.mark.parametrize("mode,code,text", [("config", 2, "BIOMETRICS_WAREHOUSE_URL"), ("input", 2, "missing staging"),
                                            ("quality", 1, "volume"), ("crash", 1, "went away second line")])
def test_errors_map_to_exit_codes(tmp_path, mode, code, text):
    result = invoke("run", "--date", "2026-01-05", "--staging-path", str(tmp_path), "--fail-with", mode)
    assert result.exit_code == code
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and text in errors[0]
    assert "hunter22" not in result.output
    has_manifest = bool(result.stdout.strip())
    assert has_manifest == (mode == "quality")  # validate's results are printed even when it fails


def test_usage_errors_are_one_line(tmp_path):
    result = invoke("run", "--staging-path", str(tmp_path))
    assert result.exit_code == 2 and "Missing option '--date'" in result.stderr
    assert "(see biometrics-demo run --help)" in result.stderr
    result = invoke("bogus")
    assert result.exit_code == 2 and "(see biometrics-demo --help)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = invoke("run", "--date", "01/05/2026", "--staging-path", str(tmp_path))
    assert result.exit_code == 2 and "invalid --date '01/05/2026'" in result.stderr
    # an empty one (--staging-path "$UNSET") is a usage error too, not a crash on a missing staging area
    result = invoke("run", "--date", "2026-01-05", "--staging-path", "")
    assert result.exit_code == 2 and result.stderr.strip() == "biometrics-demo: error: the staging path is empty"


def test_redact_masks_url_passwords_and_secret_variables(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "abcdEFGH1234")
    monkeypatch.setenv("BIOMETRICS_WAREHOUSE_URL", "postgresql://u:p%40ss@h/db")
    text = redact("postgresql+psycopg2://etl:s3cret@db:5432/wh failed; key abcdEFGH1234; p%40ss")
    assert "s3cret" not in text and "abcdEFGH1234" not in text and "p%40ss" not in text
    assert "etl:***@db" in text


def test_every_secret_setting_is_masked(monkeypatch):
    """The secret-masking list is the settings' own: AWS_ACCESS_KEY_ID, marked secret, had been left out."""
    secret = [s.name for s in settings.SETTINGS if s.secret]
    assert {"AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "BIOMETRICS_RESTORE_TARGET_URL"} <= set(secret)
    for number, name in enumerate(secret):
        monkeypatch.setenv(name, f"Value{number}Of{name}")
    text = redact(" ".join(f"Value{number}Of{name}" for number, name in enumerate(secret)))
    assert set(text.split()) == {"***"}, text


def test_redact_masks_query_passwords_and_passwords_with_an_at(monkeypatch):
    monkeypatch.setenv("BIOMETRICS_DB_URL", "postgresql+psycopg2:///db?host=h&password=Qu3ryPw&port=1")
    text = redact("cannot connect (postgresql:///db?host=h&password=Qu3ryPw&port=1); auth Qu3ryPw; "
                  "postgresql://u:SEC@RET@h/db")
    assert "Qu3ryPw" not in text and "SEC" not in text and "RET" not in text
    assert "password=***&port=1" in text and "postgresql://u:***@h/db" in text


def test_safe_url_hides_every_password():
    from biometrics_core.db import parse_url, safe_url
    assert safe_url("postgresql+psycopg2://u:pw1@h/db?password=pw2&sslmode=require") == \
        "postgresql+psycopg2://u:***@h/db?password=***&sslmode=require"
    with pytest.raises(ConfigError, match="unencoded '@'") as raised:
        parse_url("postgresql+psycopg2://u:SEC@RET@h/db", "BIOMETRICS_DB_URL")
    assert "SEC" not in str(raised.value) and "RET" not in str(raised.value)
    assert parse_url("postgresql://u:p@h/db", "X").drivername == "postgresql+psycopg2"


def test_libpq_env_takes_the_query_parameters_libpq_knows():
    from biometrics_core.db import libpq_env
    env = libpq_env("postgresql+psycopg2:///wh?host=/run/pg&port=5433&user=etl&password=p%40ss")
    assert env == {"PGHOST": "/run/pg", "PGPORT": "5433", "PGUSER": "etl", "PGPASSWORD": "p@ss", "PGDATABASE": "wh"}


def test_settings_validation(monkeypatch):
    monkeypatch.setenv("BIOMETRICS_BATCH_SIZE", "0")
    with pytest.raises(ConfigError, match="at least 1"):
        settings.batch_size()
    monkeypatch.setenv("BIOMETRICS_BATCH_SIZE", "lots")
    with pytest.raises(ConfigError, match="not a whole number"):
        settings.batch_size()
    monkeypatch.setenv("BIOMETRICS_BATCH_SIZE", str(2**31))
    with pytest.raises(ConfigError, match="at most 2147483647"):
        settings.batch_size()
    monkeypatch.delenv("BIOMETRICS_BATCH_SIZE")
    assert settings.batch_size() == 10000
    for size in ("512MB", "1.5GiB", " 2gb "):
        monkeypatch.setenv("BIOMETRICS_MEMORY_LIMIT", size)
        assert settings.get_size("BIOMETRICS_MEMORY_LIMIT") == size.strip()
    for size in ("lots", "0MB", "512", "-1GB", "1 parsecs"):
        monkeypatch.setenv("BIOMETRICS_MEMORY_LIMIT", size)
        with pytest.raises(ConfigError, match="not a memory size"):
            settings.get_size("BIOMETRICS_MEMORY_LIMIT")
    assert settings.get_optional_int("BIOMETRICS_THREADS") is None
    assert settings.log_level("debug") == "DEBUG"
    monkeypatch.delenv("BIOMETRICS_WAREHOUSE_URL", raising=False)
    with pytest.raises(ConfigError, match="BIOMETRICS_WAREHOUSE_URL is not set"):
        settings.warehouse_url()


def test_libpq_env_keeps_the_password_out_of_argv_and_passes_options():
    from biometrics_core.db import libpq_env
    env = libpq_env("postgresql+psycopg2://etl:p%40ss@db.example:5433/wh?sslmode=require&connect_timeout=5")
    assert env == {"PGHOST": "db.example", "PGPORT": "5433", "PGUSER": "etl", "PGPASSWORD": "p@ss",
                   "PGDATABASE": "wh", "PGSSLMODE": "require", "PGCONNECT_TIMEOUT": "5"}


def test_row_values_in_database_errors_are_left_out_of_messages_and_logs():
    """PostgreSQL's DETAIL quotes the row (health data), also when a value holds a newline."""
    import logging

    from biometrics_core import logs
    error = ('new row for relation "daily_metrics" violates check constraint "c"\n'
             "DETAIL:  Failing row contains (2026-01-05, 131, heart_rate, 84.15\nsecond line of a value).\n"
             "CONTEXT:  COPY daily_metrics, line 1")
    duplicate = ('duplicate key value violates unique constraint "k"\n'
                 "DETAIL:  Key (created_at, user_id)=(2026-01-05 04:10:13+00, 131) already exists.")
    german = "FEHLER:  doppelter Schlüsselwert\nDETAIL:  Schlüssel »(id)=(131)« existiert bereits."
    for text in (duplicate, " ".join(error.split("\n")), german):
        cleaned = redact(text)
        assert "131" not in cleaned and "84.15" not in cleaned, cleaned
        assert "left out: it may quote a row's values" in cleaned
    # to the end of its line: what follows (the context, a traceback's next frames) stays
    assert redact(error + "\nThe above exception was the direct cause").endswith(
        "CONTEXT:  COPY daily_metrics, line 1\nThe above exception was the direct cause")
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "traceback", None,
                               (RuntimeError, RuntimeError(error), None))
    formatted = logs._RedactingFormatter("%(message)s").format(record)
    assert "84.15" not in formatted and "RuntimeError" in formatted


@pytest.mark.postgres
def test_a_detail_over_several_lines_is_left_out_of_the_message_and_a_logged_traceback(postgres_server, capsys):
    """A refused row whose text holds a newline: the DETAIL pattern stops at the line's end, so the
    value's next lines had stayed in a DEBUG traceback; the driver's own copy of the detail goes whole.
    SQLAlchemy's text of the error had also quoted the statement's bound values."""
    import logging

    import sqlalchemy as sa

    from biometrics_core import db, logs
    from biometrics_core.cli import classify
    engine = db.connect(postgres_server.create_database("detail_lines"), "BIOMETRICS_WAREHOUSE_URL", "warehouse")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id int, note text CHECK (note NOT LIKE '%!%'))"))
    row = {"id": 130 + 1, "note": "first\n" + "second-line-" + "value!"}  # not as such in the traceback's source lines
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (:id, :note)"), row)
    except sa.exc.DBAPIError as exc:
        refused = exc
    engine.dispose()
    message, code = classify(refused)
    assert code == 1 and 'violates check constraint "t_note_check"' in message
    assert "second-line-value" not in message and "left out: it may quote a row's values" in message
    logs.configure("DEBUG")
    try:
        logging.getLogger("biometrics").debug("traceback", exc_info=refused)
    finally:
        logs.configure("INFO")
    logged = capsys.readouterr().err
    assert "Traceback" in logged and "t_note_check" in logged
    assert "second-line-value" not in logged and "131" not in logged, logged


def test_what_a_stage_writes_is_readable_by_its_owner_only(tmp_path):
    import os
    import stat
    previous = os.umask(0o022)
    try:
        assert invoke("run", "--date", "2026-01-05", "--staging-path", str(tmp_path / "staging")).exit_code == 0
    finally:
        os.umask(previous)
    manifest = tmp_path / "staging" / "manifests" / "demo-run.json"
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o600
    assert stat.S_IMODE(manifest.parent.stat().st_mode) == 0o700


def test_a_port_inside_the_host_parameter_is_refused():
    """psycopg2 takes ?host=h:5432, libpq's own tools (pg_dump, ADBC's COPY) read it as a host name."""
    from biometrics_core.db import parse_url
    for url in ("postgresql+psycopg2://u@/db?host=127.0.0.1:5432", "postgresql://u@/db?host=a:1&host=b:2",
                "postgresql://u@/db?host=[::1]:5432"):
        with pytest.raises(ConfigError, match="give the port as port="):
            parse_url(url, "BIOMETRICS_DB_URL")
    for url in ("postgresql://u@/db?host=/run/postgresql&port=5433", "postgresql://u@/db?host=::1",
                "postgresql://u@h:5433/db"):
        parse_url(url, "BIOMETRICS_DB_URL")


@pytest.mark.parametrize("name,value", [("BIOMETRICS_VOLUME_MIN_RATIO", "abc"), ("BIOMETRICS_THREADS", "2.0"),
                                        ("BIOMETRICS_THREADS", "2000"), ("BIOMETRICS_MEMORY_LIMIT", "lots"),
                                        ("BIOMETRICS_VOLUME_MAX_RATIO", "0.1"), ("BIOMETRICS_BATCH_SIZE", "0"),
                                        ("BIOMETRICS_VALIDATE_WORK_MEM", "lots"), ("BIOMETRICS_LOG_LEVEL", "loud")])
def test_every_stage_refuses_any_stages_bad_setting_before_it_runs(monkeypatch, name, value):
    """The DAG gives every container the same settings: a value only validate or the transform reads
    had let the extract, the transform and the load replace the warehouse's day first."""
    monkeypatch.setenv(name, value)
    result = invoke("run", "--date", "2026-01-05", "--staging-path", "/tmp/never-written")
    assert result.exit_code == 2 and name in result.stderr, result.stderr
    assert "rows_in" not in result.stdout  # the command's body never ran


@pytest.mark.postgres
def test_too_many_connections_is_the_same_exit_code_through_every_driver(postgres_server):
    """The extract reads through SQLAlchemy (psycopg2) and ADBC: a server out of connections was
    exit 2 through the one and exit 1 through the other."""
    import adbc_driver_postgresql.dbapi as adbc
    import sqlalchemy as sa

    from biometrics_core.cli import classify
    url = sa.make_url(postgres_server.create_database("connection_limit"))
    admin = sa.create_engine(postgres_server.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP ROLE IF EXISTS one_at_a_time"))
        conn.execute(sa.text("CREATE ROLE one_at_a_time LOGIN PASSWORD 'limited' CONNECTION LIMIT 1"))
    limited = url.set(username="one_at_a_time", password="limited")
    engine = sa.create_engine(limited)
    codes = {}
    try:
        with engine.connect():
            try:
                sa.create_engine(limited, poolclass=sa.pool.NullPool).connect()
            except sa.exc.OperationalError as exc:
                codes["sqlalchemy"] = classify(exc)
            try:
                adbc.connect(limited.set(drivername="postgresql").render_as_string(hide_password=False))
            except adbc.Error as exc:
                codes["adbc"] = classify(exc)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text("DROP ROLE one_at_a_time"))
        admin.dispose()
    assert {driver: code for driver, (_message, code) in codes.items()} == {"sqlalchemy": 2, "adbc": 2}
    assert all("too many connections" in message and "limited" not in message for message, _ in codes.values())


@pytest.mark.postgres
def test_a_lock_timeout_is_a_failed_run_not_a_configuration_error(postgres_server):
    """lock_timeout (55P03) came through SQLAlchemy as an OperationalError, which was exit 2 like a
    connection refused; a load waiting on a lock is a stage that ran and failed (exit 1)."""
    import psycopg2
    import sqlalchemy as sa

    from biometrics_core.cli import classify
    url = postgres_server.create_database("lock_timeout")
    engine = sa.create_engine(url)
    # (the session's own setting: a SET in the transaction would go with its rollback)
    impatient = sa.create_engine(url, connect_args={"options": "-c lock_timeout=50ms"})
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id int)"))
    with engine.connect() as holder, impatient.connect() as waiter:
        holder.execute(sa.text("LOCK TABLE t IN ACCESS EXCLUSIVE MODE"))
        with pytest.raises(sa.exc.OperationalError) as wrapped:
            waiter.execute(sa.text("SELECT * FROM t"))
        waiter.rollback()
        raw = waiter.connection.dbapi_connection.cursor()
        with pytest.raises(psycopg2.OperationalError) as unwrapped:
            raw.execute("SELECT * FROM t")
        holder.rollback()
    engine.dispose()
    impatient.dispose()
    for exc in (wrapped.value, unwrapped.value):
        message, code = classify(exc)
        assert code == 1 and "lock timeout" in message, (message, code)
