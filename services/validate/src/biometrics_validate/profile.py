"""The day's readings aggregated once, for ``values_in_range`` and ``daily_metrics_consistency``.

A day holds ~300 k (user_id, metric_type) groups, and PostgreSQL's hash aggregation of 10 M rows
into that many groups costs most of validate's time in cache misses, whatever it computes per
group. So the one scan of the readings groups them into a few buckets instead: by metric type and
``user_id % USER_BUCKETS``. Each bucket is compared with daily_metrics' groups summed into the same
bucket, the way reconciliation tools compare checksums of segments before rows: count, min, max and
sum, plus the count and sum weighted by a number mixed from each user's id, so that a reading
counted for the wrong user of a bucket, or two errors that cancel in the plain sums, still
disagree. Within daily_metrics each row's average is checked against its own sum and count.

A bucket that disagrees proves nothing by itself: the day's groups are then compared one by one
(``compare_groups``), which names and counts every disagreement, and that verdict is the check's.
What the buckets cannot see: a group's min or max wrong while its bucket's are right.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from biometrics_core.catalogue import METRICS
from biometrics_core.warehouse import DAILY_METRICS_TABLE, READINGS_TABLE

from .day import as_int, fetch_rows

# sums and averages of floats depend on the order of addition (DuckDB adds in parallel, the
# warehouse in scan order): a group's sum and average match within this relative tolerance;
# counts, min and max exactly
REL_TOLERANCE = 1e-9
# a bucket sums a few hundred groups' sums of like values (one metric type): the order of
# addition moves that by ~1e-14 (at worst ~1e-12), so a bucket is held to a tighter tolerance, and
# one group's sum off by more than about REL_TOLERANCE still shows in its bucket's
BUCKET_TOLERANCE = 1e-11
# 256 buckets per metric type keep the hash table in the processor's caches (~2 k entries) and
# put ~150 users in each at 39 k users
USER_BUCKETS = 256
# a weight per user mixed from the id: the id's residue modulo the prime 2^31 - 1, multiplied by
# 48271 (a primitive root) modulo it, so two users of a bucket share a weight only when their ids
# differ by a multiple of 256 x (2^31 - 1) (with 65521, a multiple of 16.7 M did it: a reading moved
# between such users went unseen). Never overflowing (products < 2^47), fits a 32-bit INTEGER, one
# expression on PostgreSQL and SQLite; a negative id keeps its sign through %, so no two residues meet
_USER_WEIGHT = "CAST((user_id % 2147483647) * 48271 % 2147483647 + 1 AS INTEGER)"

log = logging.getLogger(__name__)


def catalogue_cte() -> tuple[str, dict]:
    """``catalogue (metric_type, unit, low, high) AS (VALUES …)`` and its parameters."""
    values, params = [], {}
    for i, m in enumerate(METRICS.values()):
        values.append(f"(:m{i}, :u{i}, CAST(:lo{i} AS DOUBLE PRECISION), CAST(:hi{i} AS DOUBLE PRECISION))")
        params.update({f"m{i}": m.name, f"u{i}": m.unit, f"lo{i}": float(m.low), f"hi{i}": float(m.high)})
    return f"catalogue (metric_type, unit, low, high) AS (VALUES {', '.join(values)})", params


def _canonical_unit_expr() -> str:
    """The metric's canonical unit as a CASE over the catalogue's parameters (NULL for an unknown
    metric): tested on every row while aggregating, it costs far less than grouping by unit."""
    whens = " ".join(f"WHEN :m{i} THEN :u{i}" for i in range(len(METRICS)))
    return f"CASE metric_type {whens} END"


# no sum or average of catalogue values comes near this; above it a figure is absurd (NaN and
# ±Infinity included), never close to another, and two such figures are never subtracted (the
# difference of two finite floats near the largest one overflows, which PostgreSQL raises)
_ABSURD = 1e300
# below this a mean is indistinguishable from zero (dividing a sum this small underflows, which
# PostgreSQL raises)
_TINY = 1e-290


def _close(a: str, b: str, tolerance: float = REL_TOLERANCE) -> str:
    """|a - b| <= tolerance * max(|a|, |b|), for finite figures of sane magnitude only, in SQL both
    dialects know (no greatest() in SQLite). NaN and ±Infinity are never close: in PostgreSQL
    NaN = NaN, and ``inf <= tolerance * inf`` holds. The max is taken at least 1e-300: PostgreSQL
    raises "underflow" for a product of non-zero floats that rounds to 0 (the tolerance times a sum
    of values like 1e-320)."""
    return (f"CASE WHEN abs({a}) <= {_ABSURD!r} AND abs({b}) <= {_ABSURD!r} THEN "
            f"abs({a} - {b}) <= {tolerance!r} * "
            f"CASE WHEN abs({a}) > abs({b}) AND abs({a}) > 1e-300 THEN abs({a}) "
            f"WHEN abs({b}) > 1e-300 THEN abs({b}) ELSE 1e-300 END ELSE 1 = 0 END")


def _close_to_mean(value: str, total: str, count: str) -> str:
    """``value`` is close to total / count (count > 0); a mean too small to divide out is close only
    to a value as small (denormal readings are in range, and their sum divided underflows)."""
    return (f"CASE WHEN abs({total}) <= {_TINY!r} * {count} THEN abs({value}) <= {_TINY!r} "
            f"ELSE {_close(value, f'{total} / {count}')} END")


# -- the buckets -----------------------------------------------------------------------------------
# a bucket agrees when all of these hold; a NULL (a side missing, no values) counts as disagreeing
_BUCKET_AGREES = " AND ".join((
    "r.n = d.n", "r.weighted_n = d.weighted_n", "r.lo = d.lo", "r.hi = d.hi", "d.bad_rows = 0",
    _close("r.total", "d.total", BUCKET_TOLERANCE), _close("r.weighted_total", "d.weighted_total", BUCKET_TOLERANCE)))


@dataclass
class DayProfile:
    """The day's readings per metric type (from their buckets), how many buckets disagree with
    daily_metrics, and the readings of each source the profile was asked to count."""
    by_metric: dict[str, dict]
    buckets: int                # (metric type, user bucket) pairs on either side
    disagreeing_buckets: int
    readings_by_source: dict[str, int] = field(default_factory=dict)

    @property
    def readings(self) -> int:
        return sum(m["readings"] for m in self.by_metric.values())

    @property
    def groups(self) -> int:
        """daily_metrics' groups of the day."""
        return sum(m["groups"] for m in self.by_metric.values())

    @property
    def sources_complete(self) -> bool:
        """Every reading is from one of the sources counted (else a GROUP BY source must name the rest)."""
        return sum(self.readings_by_source.values()) == self.readings


def day_profile(conn: sa.Connection, day: dt.date, sources: Sequence[str] = ()) -> DayProfile:
    """The day's one aggregate of its readings; ``sources``: the sources whose readings it also counts."""
    started = time.monotonic()
    catalogue, params = catalogue_cte()
    params.update({f"source{i}": source for i, source in enumerate(sources)})
    bucket = f"user_id % {USER_BUCKETS}"
    # counted beside the bucket's other figures, not grouped by: the buckets stay few
    from_sources = "".join(f", sum(CASE WHEN source = :source{i} THEN 1 ELSE 0 END) AS from_{i}"
                           for i in range(len(sources)))
    sums = "".join(f", sum(b.from_{i}) AS from_{i}" for i in range(len(sources)))
    rows = fetch_rows(conn, f"""
        WITH {catalogue}, r AS (
            SELECT metric_type, {bucket} AS bucket, count(*) AS n, count(value) AS valued,
                   min(value) AS lo, max(value) AS hi, sum(value) AS total,
                   sum({_USER_WEIGHT}) AS weighted_n, sum(value * {_USER_WEIGHT}) AS weighted_total,
                   sum(CASE WHEN unit = {_canonical_unit_expr()} THEN 0 ELSE 1 END) AS other_unit{from_sources}
            FROM {READINGS_TABLE} WHERE date = :day GROUP BY metric_type, {bucket}
        ), d AS (
            SELECT metric_type, {bucket} AS bucket, count(*) AS groups, sum(sample_count) AS n,
                   min(min_value) AS lo, max(max_value) AS hi, sum(sum_value) AS total,
                   sum(sample_count * {_USER_WEIGHT}) AS weighted_n, sum(sum_value * {_USER_WEIGHT}) AS weighted_total,
                   -- a row's own figures: its average from its sum and count
                   sum(CASE WHEN sample_count > 0 AND min_value <= max_value
                                 AND {_close_to_mean("value", "sum_value", "sample_count")} THEN 0 ELSE 1 END) AS bad_rows
            FROM {DAILY_METRICS_TABLE} WHERE date = :day GROUP BY metric_type, {bucket}
        ), b AS (
            SELECT coalesce(r.metric_type, d.metric_type) AS metric_type, r.n, r.valued, r.lo, r.hi,
                   r.other_unit, d.groups, CASE WHEN {_BUCKET_AGREES} THEN 0 ELSE 1 END AS disagrees
                   {"".join(f", r.from_{i}" for i in range(len(sources)))}
            FROM r FULL OUTER JOIN d ON d.metric_type = r.metric_type AND d.bucket = r.bucket
        )
        SELECT b.metric_type, count(*) AS buckets, sum(b.groups) AS groups, sum(b.n) AS readings,
               sum(b.n - b.valued) AS null_values, sum(b.other_unit) AS other_unit,
               max(CASE WHEN c.metric_type IS NULL THEN 0 ELSE 1 END) AS known,
               -- NaN fails too: PostgreSQL orders NaN above every number
               sum(CASE WHEN c.metric_type IS NOT NULL AND b.n IS NOT NULL
                             AND NOT (b.lo >= c.low AND b.hi <= c.high) THEN 1 ELSE 0 END) AS buckets_out_of_range,
               sum(b.disagrees) AS disagreeing_buckets{sums}
        FROM b LEFT JOIN catalogue c ON c.metric_type = b.metric_type
        GROUP BY b.metric_type""", day=day, **params)
    by_metric = {r["metric_type"]: {k: as_int(r[k]) for k in ("groups", "readings", "null_values", "other_unit",
                                                             "known", "buckets_out_of_range")} for r in rows}
    by_source = {source: sum(as_int(r[f"from_{i}"]) for r in rows) for i, source in enumerate(sources)}
    profile = DayProfile(by_metric, buckets=sum(as_int(r["buckets"]) for r in rows),
                         disagreeing_buckets=sum(as_int(r["disagreeing_buckets"]) for r in rows),
                         readings_by_source={source: n for source, n in by_source.items() if n})
    log.info("aggregated the day's readings: %d readings in %d buckets (%d disagree with daily_metrics) in %.1f s",
             profile.readings, profile.buckets, profile.disagreeing_buckets, time.monotonic() - started)
    return profile


# -- group by group --------------------------------------------------------------------------------
_MISMATCHES = {  # mismatch kind -> SQL true when the group is fine (a NULL counts as a mismatch)
    "sample_count": "d.sample_count = r.n",
    "min_value": "d.min_value = r.lo",
    "max_value": "d.max_value = r.hi",
    "sum_value": _close("d.sum_value", "r.total"),
    "avg_value": _close_to_mean("d.value", "r.total", "r.n"),
}
MISMATCH_KINDS = tuple(_MISMATCHES)
_GROUP_FLAGS = ("missing", "extra", *_MISMATCHES)


def _judged_groups(conn: sa.Connection) -> str:
    """``WITH … judged``: every (user_id, metric_type) group of the day from either side, the readings'
    count, min, max and sum beside daily_metrics' figures, and a 0/1 flag per kind of disagreement.
    One scan of the readings; one FULL JOIN finds the groups missing on either side in the same pass
    (an anti-join would probe the index per group)."""
    flags = ",\n".join(f"CASE WHEN r.user_id IS NULL OR d.user_id IS NULL OR ({ok}) THEN 0 ELSE 1 END "
                       f"AS bad_{kind}" for kind, ok in _MISMATCHES.items())
    if conn.dialect.name == "sqlite":
        # SQLite joins two CTEs by nested scans (quadratic): join the table itself through its
        # primary key instead, and drop the other days' rows its right-join side brings along
        pairing = (f"{DAILY_METRICS_TABLE} d ON d.date = :day AND d.user_id = r.user_id AND d.metric_type = r.metric_type "
                   "WHERE d.date IS NULL OR d.date = :day")
    else:
        pairing = "d ON d.user_id = r.user_id AND d.metric_type = r.metric_type"
    return f"""
        WITH r AS (
            SELECT user_id, metric_type, count(*) AS n, min(value) AS lo, max(value) AS hi, sum(value) AS total
            FROM {READINGS_TABLE} WHERE date = :day GROUP BY user_id, metric_type
        ), d AS (
            SELECT user_id, metric_type, sample_count, min_value, max_value, sum_value, value
            FROM {DAILY_METRICS_TABLE} WHERE date = :day
        ), judged AS MATERIALIZED (
            -- no avg(): the average is judged from total / n (_close_to_mean), and avg() would keep a
            -- costlier state per group for the same figure
            SELECT coalesce(r.user_id, d.user_id) AS user_id,
                   coalesce(r.metric_type, d.metric_type) AS metric_type,
                   r.n, r.lo, r.hi, r.total,
                   d.sample_count, d.min_value, d.max_value, d.sum_value, d.value,
                   CASE WHEN d.user_id IS NULL THEN 1 ELSE 0 END AS bad_missing,
                   CASE WHEN r.user_id IS NULL THEN 1 ELSE 0 END AS bad_extra,
                   {flags}
            FROM r FULL OUTER JOIN {pairing}
        )"""


# an example names a group and what disagrees in it, not the figures: they are a user's health data,
# and the manifest goes to Airflow's XCom and to etl_runs (the warehouse has them for whoever may look)
_EXAMPLE_COLUMNS = ("user_id", "metric_type", *(f"bad_{kind}" for kind in _GROUP_FLAGS))


def compare_groups(conn: sa.Connection, day: dt.date, examples: int) -> tuple[dict[str, int], list[dict]]:
    """The day's groups compared one by one: ``groups`` (of the readings), ``missing`` (from
    daily_metrics), ``extra`` (without readings) and the groups with each kind of mismatch, with the
    first ``examples`` disagreeing groups. One statement: ``judged`` is computed once for both."""
    started = time.monotonic()
    sums = ", ".join(f"sum(bad_{k}) AS {k}" for k in _GROUP_FLAGS)
    disagrees = " OR ".join(f"bad_{k} = 1" for k in _GROUP_FLAGS)
    names = [column.split(" AS ")[-1] for column in _EXAMPLE_COLUMNS]
    rows = fetch_rows(conn, _judged_groups(conn) + f"""
        , summary AS (SELECT count(n) AS groups, {sums} FROM judged),
        examples AS (SELECT {", ".join(_EXAMPLE_COLUMNS)} FROM judged WHERE {disagrees}
                     ORDER BY user_id, metric_type LIMIT {int(examples)})
        SELECT summary.*, {", ".join(f"examples.{n}" for n in names)}
        FROM summary LEFT JOIN examples ON 1 = 1 ORDER BY examples.user_id, examples.metric_type""", day=day)
    found = {k: as_int(rows[0][k]) for k in ("groups", *_GROUP_FLAGS)}
    # a group's key is never NULL: a row without one is the summary alone (no group disagrees)
    shown = [{"user_id": r["user_id"], "metric_type": r["metric_type"],
              "differs": [kind for kind in _GROUP_FLAGS if as_int(r[f"bad_{kind}"])]}
             for r in rows if r["user_id"] is not None]
    log.info("compared the day's %d groups one by one in %.1f s", found["groups"], time.monotonic() - started)
    return found, shown
