"""A realistic, seeded sample day of readings: every metric, every unit, every kind of bad record.

The generator is vectorised (numpy), so it makes millions of rows in seconds. It returns Arrow
tables with the columns of the application's ``raw_biometric_data`` table; ``write_source`` puts
one into a database and ``write_vendor_files`` drops vendor files into an inbox.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

# metric -> (canonical unit, typical value, spread, low, high, alternative unit, to_alt(value))
_PROFILES = {
    "heart_rate": ("bpm", 72.0, 12.0, 25, 250, None),
    "spo2": ("percent", 97.0, 1.5, 70, 100, None),
    "steps": ("count", 800.0, 600.0, 0, 100000, None),
    "skin_temperature": ("celsius", 33.5, 1.2, 25, 45, "fahrenheit"),
    "respiratory_rate": ("breaths_per_min", 15.0, 3.0, 4, 60, None),
    "hrv_rmssd": ("ms", 45.0, 15.0, 1, 300, None),
    "sleep_minutes": ("minutes", 420.0, 60.0, 0, 1440, "hours"),
    "blood_glucose": ("mg_dl", 105.0, 20.0, 20, 600, "mmol_l"),
}
METRIC_NAMES = tuple(_PROFILES)

SOURCE_SCHEMA = pa.schema([
    ("reading_id", pa.int64()), ("user_id", pa.int64()), ("device_id", pa.string()),
    ("metric_type", pa.string()), ("value", pa.float64()), ("unit", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")), ("ingested_at", pa.timestamp("us", tz="UTC")),
])

BAD_KINDS = ("unknown_unit", "unknown_metric_type", "missing_value", "out_of_range", "duplicate")


def _to_alt(unit: str, value: np.ndarray) -> np.ndarray:
    if unit == "fahrenheit":
        return value * 9.0 / 5.0 + 32.0
    if unit == "hours":
        return value / 60.0
    if unit == "mmol_l":
        return value / 18.016
    raise ValueError(unit)


@dataclass
class SampleDay:
    day: dt.date
    database: pa.Table               # rows for raw_biometric_data (incl. neighbouring days' rows)
    vendors: dict[str, pa.Table]     # vendor name -> its file's rows (same columns)


def generate_readings(day: dt.date, n: int, *, seed: int = 42, users: int | None = None,
                      first_id: int = 1, bad_fraction: float = 0.01) -> pa.Table:
    """``n`` readings of ``day`` (UTC), about ``bad_fraction`` of each bad kind."""
    rng = np.random.default_rng(seed)
    users = users or max(1, n // 40)
    start = np.datetime64(dt.datetime.combine(day, dt.time.min), "us")
    user_id = rng.integers(1, users + 1, n, dtype=np.int64)
    device_no = rng.integers(0, 2, n)
    device_id = np.char.add(np.char.add("dev-", user_id.astype(str)), np.where(device_no == 0, "-w", "-p"))
    metric_idx = rng.integers(0, len(METRIC_NAMES), n)
    metric = np.array(METRIC_NAMES, dtype=object)[metric_idx]
    typical = np.array([_PROFILES[m][1] for m in METRIC_NAMES])[metric_idx]
    spread = np.array([_PROFILES[m][2] for m in METRIC_NAMES])[metric_idx]
    low = np.array([_PROFILES[m][3] for m in METRIC_NAMES], dtype=float)[metric_idx]
    high = np.array([_PROFILES[m][4] for m in METRIC_NAMES], dtype=float)[metric_idx]
    value = np.clip(rng.normal(typical, spread), low, high)
    value = np.where(metric == "steps", np.round(value), np.round(value, 2))
    unit = np.array([_PROFILES[m][0] for m in METRIC_NAMES], dtype=object)[metric_idx]
    # some readings arrive in the accepted other unit, some without a unit (= canonical)
    alt_pick = rng.random(n) < 0.15
    for m in METRIC_NAMES:
        alt = _PROFILES[m][5]
        if alt:
            sel = alt_pick & (metric == m)
            value[sel] = np.round(_to_alt(alt, value[sel]), 4)
            unit[sel] = alt
    unit[rng.random(n) < 0.05] = None
    offsets = rng.integers(0, 86_400_000_000, n)  # microseconds into the day
    created = start + offsets.astype("timedelta64[us]")
    ingested = created + rng.integers(1_000_000, 600_000_000, n).astype("timedelta64[us]")

    # bad records, about bad_fraction of each kind, on disjoint rows
    kinds = rng.random(n)
    bounds = np.cumsum([bad_fraction] * len(BAD_KINDS))
    kind_of = np.searchsorted(bounds, kinds, side="right")  # 0..4 = bad kind, 5 = good
    sel = kind_of == 0
    unit[sel] = np.array(["kg", "mmHg", "bananas"], dtype=object)[rng.integers(0, 3, sel.sum())]
    sel = kind_of == 1
    metric[sel] = np.array(["body_mass", "mood", "blood_pressure"], dtype=object)[rng.integers(0, 3, sel.sum())]
    sel = kind_of == 2
    value[sel] = np.nan
    nulls = np.zeros(n, dtype=bool)
    nulls[np.flatnonzero(sel)[::2]] = True  # half of them NULL, the other half NaN
    sel = kind_of == 3
    value[sel] = np.where(rng.random(sel.sum()) < 0.5, high[sel] * 3 + 1, low[sel] - 1000)
    unit[sel] = np.array([_PROFILES[m][0] if m in _PROFILES else None for m in metric[sel]], dtype=object)
    # duplicates: the same key as an earlier good row, a later reading_id
    dup = np.flatnonzero(kind_of == 4)
    good = np.flatnonzero(kind_of == 5)
    if len(dup) and len(good):
        originals = good[rng.integers(0, len(good), len(dup))]
        for col in (user_id, device_id, metric, value, unit, created, ingested):
            col[dup] = col[originals]
        # an original must come first (lower reading_id): make the duplicate rows the last ids
    reading_id = np.arange(first_id, first_id + n, dtype=np.int64)
    if len(dup):
        order = np.concatenate([np.flatnonzero(kind_of != 4), dup])
        reading_id = np.empty(n, dtype=np.int64)
        reading_id[order] = np.arange(first_id, first_id + n, dtype=np.int64)
    return pa.table({
        "reading_id": reading_id,
        "user_id": user_id,
        "device_id": device_id.astype(object),
        "metric_type": metric,
        "value": pa.array(value, mask=nulls, type=pa.float64()),
        "unit": pa.array(unit, type=pa.string()),
        "created_at": pa.array(created, type=pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")),
        "ingested_at": pa.array(ingested, type=pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")),
    }, schema=SOURCE_SCHEMA).sort_by("reading_id")


def _boundary_rows(day: dt.date, first_id: int) -> pa.Table:
    """Readings at the edges of the day and just outside it."""
    utc = dt.timezone.utc
    start = dt.datetime.combine(day, dt.time.min, tzinfo=utc)
    times = [
        start,                                             # 00:00:00 of D: in
        start + dt.timedelta(days=1, microseconds=-1000),  # 23:59:59.999: in
        start + dt.timedelta(days=1, microseconds=-1),     # 23:59:59.999999: in
        start + dt.timedelta(days=1),                      # 00:00:00 of D+1: the next day's
        start - dt.timedelta(microseconds=1),              # the previous day's last microsecond
        start - dt.timedelta(hours=5),                     # the previous day
        start + dt.timedelta(days=1, hours=3),             # the next day
    ]
    n = len(times)
    return pa.table({
        "reading_id": pa.array(range(first_id, first_id + n), pa.int64()),
        "user_id": pa.array([900_000 + i for i in range(n)], pa.int64()),
        "device_id": [f"dev-edge-{i}" for i in range(n)],
        "metric_type": ["heart_rate"] * n,
        "value": pa.array([60.0 + i for i in range(n)], pa.float64()),
        "unit": ["bpm"] * n,
        "created_at": pa.array(times, pa.timestamp("us", tz="UTC")),
        "ingested_at": pa.array([t + dt.timedelta(minutes=1) for t in times], pa.timestamp("us", tz="UTC")),
    }, schema=SOURCE_SCHEMA)


def _repeated_ids(day: dt.date, first_id: int) -> pa.Table:
    """A vendor's repeated ids: one given to two different readings (both must end in the dead-letter
    queue), and one record sent twice (one copy kept, the other a duplicate)."""
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=dt.timezone.utc)

    def record(reading_id: int, device: str) -> dict:
        return {"reading_id": reading_id, "user_id": 950_000, "device_id": device, "metric_type": "heart_rate",
                "value": 64.0, "unit": "bpm", "created_at": noon, "ingested_at": noon + dt.timedelta(minutes=1)}
    rows = [record(first_id, "dev-repeat-a"), record(first_id, "dev-repeat-b"),
            record(first_id + 1, "dev-repeat-c"), record(first_id + 1, "dev-repeat-c")]
    return pa.Table.from_pylist(rows, schema=SOURCE_SCHEMA)


def generate_day(day: dt.date, *, users: int = 3000, readings_per_user: int = 30, seed: int = 42,
                 vendor_rows: int = 400) -> SampleDay:
    n = users * readings_per_user
    main = generate_readings(day, n, seed=seed, users=users)
    edges = _boundary_rows(day, n + 1)
    acme = generate_readings(day, vendor_rows, seed=seed + 1, users=max(1, users // 10), first_id=1,
                             bad_fraction=0.02)
    # a late delivery: a record of the day before, which must end in the dead-letter queue
    stray = acme.slice(0, 1).to_pylist()[0]
    stray.update(reading_id=vendor_rows + 1, created_at=dt.datetime.combine(
        day - dt.timedelta(days=1), dt.time(23, 30), tzinfo=dt.timezone.utc))
    fitco = generate_readings(day, vendor_rows // 2, seed=seed + 2, users=max(1, users // 10),
                              first_id=5_000_000, bad_fraction=0.02)
    vendors = {
        "acme": pa.concat_tables([acme, pa.Table.from_pylist([stray], schema=SOURCE_SCHEMA)]),
        "fitco": pa.concat_tables([fitco, _repeated_ids(day, 5_900_000)]),
    }
    return SampleDay(day, pa.concat_tables([main, edges]), vendors)


# -- writing ---------------------------------------------------------------------------------------
def source_metadata() -> tuple[sa.MetaData, sa.Table]:
    metadata = sa.MetaData()
    table = sa.Table(
        "raw_biometric_data", metadata,
        sa.Column("reading_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("device_id", sa.Text, nullable=False),
        sa.Column("metric_type", sa.Text, nullable=False),
        sa.Column("value", sa.Float(precision=53)),
        sa.Column("unit", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Index("ix_raw_biometric_data_created_at", "created_at"),
    )
    return metadata, table


def write_source(url: str, table: pa.Table, *, replace: bool = False) -> int:
    """Create ``raw_biometric_data`` (the app's table) if needed and insert the rows. The URL is read
    as the stages read it (a bare ``postgresql://`` is psycopg2's)."""
    from biometrics_core.db import parse_url
    engine = sa.create_engine(parse_url(url, "--db-url"))
    metadata, source = source_metadata()
    with engine.begin() as conn:
        if replace:
            source.drop(conn, checkfirst=True)
        metadata.create_all(conn)
        if engine.dialect.name == "postgresql":
            import io
            buf = io.BytesIO()
            pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
            buf.seek(0)
            with conn.connection.dbapi_connection.cursor() as cur:
                cur.copy_expert(f"COPY raw_biometric_data ({', '.join(table.column_names)}) "
                                "FROM STDIN (FORMAT csv)", buf)
        else:
            rows = table.to_pylist()
            for start in range(0, len(rows), 20_000):
                conn.execute(source.insert(), rows[start:start + 20_000])
    engine.dispose()
    return table.num_rows


def write_sqlite_source_without_constraints(path: Path, table: pa.Table, *, primary_key: bool = True) -> str:
    """The application's table in SQLite as a careless copy would make it: the columns and their
    types, none of the NOT NULL constraints (SQLite then keeps whatever a row is given), and with
    ``primary_key=False`` no key on ``reading_id`` either. Returns the URL."""
    import sqlite3
    key = "INTEGER PRIMARY KEY" if primary_key else "BIGINT"
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE raw_biometric_data (reading_id {key}, user_id BIGINT, device_id TEXT, "
                     "metric_type TEXT, value FLOAT, unit TEXT, created_at DATETIME, ingested_at DATETIME)")
    conn.close()
    url = f"sqlite:///{path}"
    write_source(url, table)  # the table exists, so it is kept as it is
    return url


def write_vendor_files(inbox: Path, day: dt.date, vendors: dict[str, pa.Table]) -> list[Path]:
    """``acme`` as CSV, every other vendor as JSON Lines, under ``inbox/<vendor>/<date>/``."""
    written = []
    for vendor, table in vendors.items():
        folder = Path(inbox) / vendor / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        rows = table.drop_columns(["ingested_at"]).to_pylist()
        if vendor == "acme":
            path = folder / "readings.csv"
            with path.open("w") as fh:
                fh.write("reading_id,user_id,device_id,metric_type,value,unit,created_at\n")
                for r in rows:
                    value = "" if r["value"] is None else ("NaN" if math.isnan(r["value"]) else repr(r["value"]))
                    fh.write(f"{r['reading_id']},{r['user_id']},{r['device_id']},{r['metric_type']},{value},"
                             f"{r['unit'] or ''},{r['created_at'].isoformat()}\n")
        else:
            path = folder / "readings.jsonl"
            with path.open("w") as fh:
                for r in rows:
                    v = r["value"]
                    r["value"] = "NaN" if v is not None and math.isnan(v) else v
                    r["created_at"] = r["created_at"].isoformat()
                    fh.write(json.dumps(r) + "\n")
        written.append(path)
    return written
