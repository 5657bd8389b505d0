"""Seed the source database with N readings of one day, in pure SQL.

Deterministic: every value comes from ``hashint8extended(k, seed + c)``, so the same
(N, day, seed) always gives the same table. The day's N rows are spread evenly over the day
(``created_at`` grows with ``reading_id``, as in an append-only table); 1 % of N more rows are
put on each neighbouring day so that the day filter and the ``created_at`` index matter.

Bad records, about 1 % of each kind (of the day's rows):
  unknown_unit          unit 'furlong'
  unknown_metric_type   metric 'stress_level' / 'body_battery'
  missing_value         0.5 % NULL, 0.5 % 'NaN'
  out_of_range          canonical unit, below the minimum or above the maximum
  duplicate             an exact copy (all columns but reading_id) of the previous reading
Valid rows use the canonical unit, and the accepted alternatives (fahrenheit, hours, mmol_l)
for part of skin_temperature, sleep_minutes and blood_glucose.
"""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor

from pgsql import BENCH_TAG, psql

SEED_VERSION = 1

SOURCE_DDL = """
CREATE TABLE raw_biometric_data (
    reading_id  BIGINT PRIMARY KEY,
    user_id     BIGINT NOT NULL,
    device_id   TEXT NOT NULL,
    metric_type TEXT NOT NULL,
    value       DOUBLE PRECISION,
    unit        TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""

# (name, canonical unit, valid lo, valid hi, realistic lo, realistic span, alt unit, alt share %, to-alt SQL)
METRICS = [
    ("heart_rate", "bpm", 25, 250, 45, 120, None, 0, None),
    ("steps", "count", 0, 100000, 0, 2000, None, 0, None),
    ("spo2", "percent", 70, 100, 90, 10, None, 0, None),
    ("skin_temperature", "celsius", 25, 45, 31, 6, "fahrenheit", 20, "{v} * 9.0 / 5.0 + 32.0"),
    ("respiratory_rate", "breaths_per_min", 4, 60, 10, 12, None, 0, None),
    ("hrv_rmssd", "ms", 1, 300, 15, 120, None, 0, None),
    ("sleep_minutes", "minutes", 0, 1440, 0, 600, "hours", 20, "{v} / 60.0"),
    ("blood_glucose", "mg_dl", 20, 600, 70, 110, "mmol_l", 30, "{v} / 18.016"),
]
# cumulative share (per 100 readings) of each metric, same order as METRICS
METRIC_WEIGHTS = [40, 20, 10, 8, 8, 6, 2, 6]

# bad-record buckets over h % 10000 (each 100 = 1 %)
BAD_UNKNOWN_UNIT = (0, 100)
BAD_UNKNOWN_METRIC = (100, 200)
BAD_NULL = (200, 250)
BAD_NAN = (250, 300)
BAD_OUT_OF_RANGE = (300, 400)
DUP_PER_10000_EVEN = 200  # 2 % of even reading_ids -> 1 % of all rows


def users_for(n: int) -> int:
    """About 256 readings per user and day: 10 M readings -> 39 k users, ~310 k (user, metric) groups."""
    return max(10, n // 256)


def _pick(expr_index: str, values: list[str]) -> str:
    return "CASE " + expr_index + " " + " ".join(f"WHEN {i + 1} THEN {v}" for i, v in enumerate(values)) + " END"


def segment_sql(lo: int, hi: int, seg_lo: int, seg_n: int, base: str, users: int, seed: int) -> str:
    """INSERT … SELECT for reading_ids lo..hi of a segment whose first id is seg_lo, whose
    seg_n rows are spread evenly over the 24 h starting at timestamptz ``base``."""
    m_case = "CASE " + " ".join(
        f"WHEN hm < {sum(METRIC_WEIGHTS[: i + 1])} THEN {i + 1}" for i in range(len(METRICS) - 1)
    ) + f" ELSE {len(METRICS)} END"
    names = [f"'{m[0]}'" for m in METRICS]
    units = [f"'{m[1]}'" for m in METRICS]
    vlo = [str(m[2]) for m in METRICS]
    vhi = [str(m[3]) for m in METRICS]
    # realistic in-range value in the canonical unit; integers for counts
    canon = []
    for name, _u, _lo, _hi, rlo, span, *_ in METRICS:
        if name in ("steps", "heart_rate", "sleep_minutes"):
            canon.append(f"floor({rlo} + u * {span})")
        else:
            canon.append(f"round(({rlo} + u * {span}) * 10.0) / 10.0")
    # alternative unit for part of some metrics (ha = another hash in 0..99)
    unit_expr, value_expr = [], []
    for i, (name, unit, *_rest) in enumerate(METRICS):
        alt_unit, alt_share, to_alt = METRICS[i][6], METRICS[i][7], METRICS[i][8]
        if alt_unit:
            unit_expr.append(f"CASE WHEN ha < {alt_share} THEN '{alt_unit}' ELSE '{unit}' END")
            value_expr.append(
                f"CASE WHEN ha < {alt_share} THEN {to_alt.format(v='(' + canon[i] + ')')} ELSE {canon[i]} END"
            )
        else:
            unit_expr.append(f"'{unit}'")
            value_expr.append(canon[i])
    out_of_range = (
        f"CASE WHEN u < 0.5 THEN {_pick('m', vlo)} - 1 - u * 10 ELSE {_pick('m', vhi)} + 1 + u * 100 END"
    )
    step_us = 86_400_000_000 / seg_n
    h = lambda c: f"(hashint8extended(k, {seed + c}) & 2147483647)"  # noqa: E731
    return f"""
INSERT INTO raw_biometric_data (reading_id, user_id, device_id, metric_type, value, unit, created_at, ingested_at)
SELECT i, user_id,
       'dev-' || user_id || '-' || device_no,
       CASE WHEN bad >= {BAD_UNKNOWN_METRIC[0]} AND bad < {BAD_UNKNOWN_METRIC[1]}
            THEN CASE WHEN ha < 50 THEN 'stress_level' ELSE 'body_battery' END
            ELSE {_pick('m', names)} END,
       CASE WHEN bad >= {BAD_NULL[0]} AND bad < {BAD_NULL[1]} THEN NULL
            WHEN bad >= {BAD_NAN[0]} AND bad < {BAD_NAN[1]} THEN 'NaN'::float8
            WHEN bad >= {BAD_OUT_OF_RANGE[0]} AND bad < {BAD_OUT_OF_RANGE[1]} THEN {out_of_range}
            WHEN bad >= {BAD_UNKNOWN_METRIC[0]} AND bad < {BAD_UNKNOWN_METRIC[1]} THEN floor(u * 100)
            ELSE {_pick('m', value_expr)} END,
       CASE WHEN bad >= {BAD_UNKNOWN_UNIT[0]} AND bad < {BAD_UNKNOWN_UNIT[1]} THEN 'furlong'
            WHEN bad >= {BAD_UNKNOWN_METRIC[0]} AND bad < {BAD_UNKNOWN_METRIC[1]} THEN 'score'
            WHEN bad >= {BAD_OUT_OF_RANGE[0]} AND bad < {BAD_OUT_OF_RANGE[1]} THEN {_pick('m', units)}
            ELSE {_pick('m', unit_expr)} END,
       created_at,
       created_at + (hi2 % 300) * interval '1 second'
FROM (
    SELECT i, k,
           1 + hu % {users} AS user_id,
           (hu / {users}) % 3 AS device_no,
           {m_case} AS m,
           hv / 2147483648.0 AS u,
           hb % 10000 AS bad,
           hx % 100 AS ha,
           hx / 100 AS hi2,
           timestamptz '{base}' + ((k - {seg_lo}) * {step_us!r}::float8) * interval '1 microsecond' AS created_at
    FROM (
        SELECT i, k, {h(2)} AS hu, {h(3)} % 100 AS hm, {h(4)} AS hv, {h(5)} AS hb, {h(6)} AS hx
        FROM (
            SELECT i,
                   CASE WHEN i % 2 = 0 AND i > {seg_lo}
                         AND (hashint8extended(i, {seed + 1}) & 2147483647) % 10000 < {DUP_PER_10000_EVEN}
                        THEN i - 1 ELSE i END AS k
            FROM generate_series({lo}::bigint, {hi}::bigint) AS i
        ) s
    ) a
) b"""


def seed(src_url: str, n: int, day: dt.date, seed_value: int, parallel: int = 2, log=print) -> dict:
    """(Re)create raw_biometric_data in src_url with n readings of ``day``; returns stats."""
    t0 = time.monotonic()
    users = users_for(n)
    neighbours = max(1, n // 100)
    psql(src_url, "DROP TABLE IF EXISTS raw_biometric_data; DROP TABLE IF EXISTS bench_seed_meta;"
         + SOURCE_DDL.replace("BIGINT PRIMARY KEY", "BIGINT") + ";")
    segments = [  # (first id, rows, start of their 24 h)
        (1, n, f"{day.isoformat()} 00:00:00+00"),
        (n + 1, neighbours, f"{(day - dt.timedelta(days=1)).isoformat()} 00:00:00+00"),
        (n + neighbours + 1, neighbours, f"{(day + dt.timedelta(days=1)).isoformat()} 00:00:00+00"),
    ]
    pieces = []
    chunk = max(250_000, -(-n // (parallel * 4)))
    for seg_lo, seg_n, base in segments:
        for lo in range(seg_lo, seg_lo + seg_n, chunk):
            hi = min(seg_lo + seg_n - 1, lo + chunk - 1)
            pieces.append(segment_sql(lo, hi, seg_lo, seg_n, base, users, seed_value))
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(lambda sql: psql(src_url, sql), pieces))
    t_insert = time.monotonic() - t0
    psql(src_url, "SET maintenance_work_mem = '1GB';"
         "ALTER TABLE raw_biometric_data ADD PRIMARY KEY (reading_id);"
         "CREATE INDEX raw_biometric_data_created_at_idx ON raw_biometric_data (created_at);")
    psql(src_url, "VACUUM (FREEZE, ANALYZE) raw_biometric_data;")
    psql(src_url, "CHECKPOINT;")
    psql(src_url, f"""CREATE TABLE bench_seed_meta AS
        SELECT {n}::bigint AS n, date '{day.isoformat()}' AS day, {seed_value} AS seed, {SEED_VERSION} AS version""")
    total = int(psql(src_url, "SELECT count(*) FROM raw_biometric_data"))
    elapsed = time.monotonic() - t0
    log(f"seeded {total:,} rows ({n:,} on {day}, {users:,} users) in {elapsed:.1f}s "
        f"(insert {t_insert:.1f}s, index+vacuum {elapsed - t_insert:.1f}s)")
    return {"rows_total": total, "rows_day": n, "users": users, "seconds": round(elapsed, 2),
            "reused": False}


def existing_seed(src_url: str, n: int, day: dt.date, seed_value: int) -> bool:
    out = psql(src_url, "SELECT to_regclass('bench_seed_meta') IS NOT NULL")
    if out.strip() != "t":
        return False
    row = psql(src_url, "SELECT n, day, seed, version FROM bench_seed_meta").strip()
    return row == f"{n}|{day.isoformat()}|{seed_value}|{SEED_VERSION}"


# the accepted alternative units, back to the canonical one
TO_CANONICAL = {"fahrenheit": "(value - 32.0) * 5.0 / 9.0", "hours": "value * 60.0", "mmol_l": "value * 18.016"}


def canonical_value_sql() -> str:
    """value in the canonical unit; NULL for an unknown metric type or unit."""
    whens = []
    for name, unit, _lo, _hi, _rl, _rs, alt, _share, _to_alt in METRICS:
        whens.append(f"WHEN metric_type = '{name}' AND unit = '{unit}' THEN value")
        if alt:
            whens.append(f"WHEN metric_type = '{name}' AND unit = '{alt}' THEN {TO_CANONICAL[alt]}")
    return "CASE " + " ".join(whens) + " END"


def in_range_sql(v: str) -> str:
    """true when canonical value v of metric_type lies in the catalogue range"""
    return ("CASE metric_type " + " ".join(f"WHEN '{m[0]}' THEN {v} BETWEEN {m[2]} AND {m[3]}" for m in METRICS)
            + " ELSE false END")


def bad_record_counts(src_url: str, day: dt.date) -> dict:
    """Count the day's rows of each bad kind, by the data contract (for the report)."""
    d0, d1 = day.isoformat(), (day + dt.timedelta(days=1)).isoformat()
    known = ", ".join(f"'{m[0]}'" for m in METRICS)
    unit_ok = " OR ".join(
        f"(metric_type = '{m[0]}' AND unit IN ('{m[1]}'" + (f", '{m[6]}'" if m[6] else "") + "))"
        for m in METRICS
    )
    sql = f"""SET work_mem = '1GB';
    {BENCH_TAG}WITH d AS (SELECT * FROM raw_biometric_data WHERE created_at >= '{d0}' AND created_at < '{d1}')
    SELECT count(*),
           count(*) FILTER (WHERE metric_type NOT IN ({known})),
           count(*) FILTER (WHERE metric_type IN ({known}) AND NOT ({unit_ok})),
           count(*) FILTER (WHERE value IS NULL OR value = 'NaN'::float8),
           count(*) FILTER (WHERE value <> 'NaN'::float8 AND ({canonical_value_sql()}) IS NOT NULL
                            AND NOT {in_range_sql(canonical_value_sql())}),
           count(*) - (SELECT count(*) FROM (SELECT 1 FROM d GROUP BY user_id, device_id, metric_type, created_at) k)
    FROM d"""
    total, unknown_metric, unknown_unit, missing, out_of_range, dups = (
        int(x) for x in psql(src_url, sql).strip().split("|"))
    return {"day_rows": total, "unknown_metric_type": unknown_metric, "unknown_unit": unknown_unit,
            "missing_value": missing, "out_of_range": out_of_range, "duplicate": dups}
