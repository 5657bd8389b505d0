"""The sample generator's own behaviour (what the other tests rely on is tested where it is used)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from biometrics_testkit import sample


@pytest.mark.postgres
def test_a_bare_postgresql_url_is_psycopg2s_as_for_the_stages(postgres_server):
    """`biometrics-sample --db-url postgresql://…` failed (SQLAlchemy 2.1 takes psycopg 3 for it)."""
    url = sa.engine.make_url(postgres_server.create_database("sample_bare_url")).set(drivername="postgresql")
    generated = sample.generate_day(dt.date(2026, 1, 5), users=3, readings_per_user=2)
    rows = sample.write_source(url.render_as_string(hide_password=False), generated.database)
    engine = sa.create_engine(url.set(drivername="postgresql+psycopg2"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM raw_biometric_data")).scalar() == rows > 0
    engine.dispose()
