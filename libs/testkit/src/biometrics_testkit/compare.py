"""Compare a loaded warehouse day with the independent reference computation (``expected``)."""

from __future__ import annotations

import datetime as dt
import math
import os
from collections import Counter

import pytest
import sqlalchemy as sa

from . import expected


def source_records(source_url: str, day: dt.date, vendors: dict) -> list[dict]:
    """The day's source rows read back with plain SQL, plus the vendor files' rows."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
    engine = sa.create_engine(source_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT * FROM raw_biometric_data WHERE created_at >= :start AND created_at < :end"),
            {"start": start, "end": start + dt.timedelta(days=1)}).mappings().all()
    engine.dispose()
    records = [{**r, "source": "database"} for r in rows]
    for vendor, table in vendors.items():
        records += [{**r, "source": vendor} for r in table.to_pylist()]
    return records


def assert_warehouse_matches(warehouse_url: str, day: dt.date, records: list[dict]) -> expected.Expected:
    """Every daily metric, clean reading and dead letter of the day as the reference computes them."""
    reference = expected.compute(day, records)
    engine = sa.create_engine(warehouse_url)
    with engine.connect() as conn:
        metrics = {(r.user_id, r.metric_type): r for r in conn.execute(sa.text(
            "SELECT * FROM daily_metrics WHERE date = :d"), {"d": day})}
        clean = {(r.source, r.reading_id): r for r in conn.execute(sa.text(
            "SELECT * FROM biometric_readings WHERE date = :d"), {"d": day})}
        dead = Counter(((r.source, int(r.source_record_id)), r.reason) for r in conn.execute(sa.text(
            "SELECT source, source_record_id, reason FROM etl_dead_letters WHERE date = :d"), {"d": day}))
    engine.dispose()
    assert set(metrics) == set(reference.daily_metrics)
    for key, (avg, low, high, total, count) in reference.daily_metrics.items():
        row = metrics[key]
        assert row.sample_count == count, key
        assert math.isclose(row.value, avg, rel_tol=1e-9, abs_tol=1e-9), key
        assert math.isclose(row.min_value, low, rel_tol=1e-12) and math.isclose(row.max_value, high, rel_tol=1e-12)
        assert math.isclose(row.sum_value, total, rel_tol=1e-9), key
    assert set(clean) == set(reference.clean)
    for key, ref in reference.clean.items():
        assert clean[key].unit == ref["unit"], key
        assert math.isclose(clean[key].value, ref["value"], rel_tol=1e-12, abs_tol=1e-12), key
    assert dead == reference.rejected
    # nothing lost: every source record of the day is in exactly one of the two places
    assert len(clean) + dead.total() == len(records)
    return reference


def require(ok: bool, why: str) -> None:
    """Skip a test whose tool is missing locally; in CI (``CI=true``) fail instead: nothing may hide."""
    if ok:
        return
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{why} (required in CI)", pytrace=False)
    pytest.skip(why)
