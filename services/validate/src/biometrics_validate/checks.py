"""The data-quality checks of a loaded day, each a small function returning a ``CheckResult``.

All the work is set-based SQL in the warehouse, over the day's partition only on PostgreSQL. The
day's readings are scanned once: one aggregate by metric type and bucket of users serves both
``values_in_range`` and ``daily_metrics_consistency`` (``profile.DayProfile``), which look at the
readings or the groups one by one only when it finds something to report; a rule the schema enforces
(NOT NULL, a primary key, a unique index) is proven by the schema instead of by a scan. Python sees
a handful of figures and a few examples, never the rows. The SQL is plain enough for both
PostgreSQL and SQLite (the embedded default).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa

from biometrics_core.catalogue import REJECT_REASONS
from biometrics_core.dates import day_window
from biometrics_core.warehouse import DAILY_METRICS_TABLE, DEAD_LETTERS_TABLE, READINGS_TABLE

from .day import DayFacts, as_int, fetch_rows, query
from .profile import (BUCKET_TOLERANCE, MISMATCH_KINDS, REL_TOLERANCE, USER_BUCKETS, DayProfile, catalogue_cte,
                      compare_groups, day_profile)

VOLUME_HISTORY_DAYS = 7
EXAMPLES = 5

log = logging.getLogger(__name__)


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Context:
    day: dt.date
    facts: DayFacts
    source_rows: dict[str, int]          # "database" and each vendor -> source rows of the day
    extracted: dict[str, int]            # the same as the extract staged them
    min_ratio: float
    max_ratio: float
    _profile: DayProfile | None = field(default=None, repr=False)  # computed on first use if not given

    def profile(self, conn: sa.Connection) -> DayProfile:
        """The day's readings aggregated once, for every check that needs them."""
        if self._profile is None:
            self._profile = day_profile(conn, self.day)
        return self._profile


# -- reconciliation --------------------------------------------------------------------------------
def reconciliation(conn: sa.Connection, ctx: Context) -> CheckResult:
    """Source rows of the day = clean rows + rejected rows, in total and for every source."""
    facts = ctx.facts
    by_source = {}
    for source in sorted(set(ctx.source_rows) | set(facts.clean_by_source) | set(facts.rejected_by_source)):
        source_n = ctx.source_rows.get(source, 0)
        clean, rejected = facts.clean_by_source.get(source, 0), facts.rejected_by_source.get(source, 0)
        # "extracted" tells where a difference arose: before the extract (the source changed since)
        # or after it (a stage lost or invented rows)
        by_source[source] = {"source": source_n, "extracted": ctx.extracted.get(source, 0), "clean": clean,
                             "rejected": rejected, "difference": source_n - clean - rejected}
    total = sum(ctx.source_rows.values())
    difference = total - facts.clean - facts.rejected
    off = {s: f["difference"] for s, f in by_source.items() if f["difference"]}
    figures = {"source_rows": total, "clean_rows": facts.clean, "rejected_rows": facts.rejected,
               "difference": difference, "by_source": by_source}
    if not off:
        return CheckResult("reconciliation", True,
                           f"{total} source rows = {facts.clean} clean + {facts.rejected} rejected", figures)
    # difference > 0: source rows in neither table (lost); < 0: rows the source does not have
    listed = ", ".join(f"{s} {d:+d}" for s, d in off.items())
    return CheckResult("reconciliation", False,
                       f"{total} source rows != {facts.clean} clean + {facts.rejected} rejected; "
                       f"source minus warehouse by source: {listed}", figures)


# -- NULL keys -------------------------------------------------------------------------------------
_KEYS = {
    READINGS_TABLE: ("source", "reading_id", "user_id", "device_id", "metric_type", "created_at"),
    DAILY_METRICS_TABLE: ("user_id", "metric_type"),
    DEAD_LETTERS_TABLE: ("stage", "source", "reason"),
}
_DATED = (READINGS_TABLE, DAILY_METRICS_TABLE)  # also checked for rows without any date


def _not_null_columns(conn: sa.Connection, table: str) -> set[str]:
    """Columns the schema declares NOT NULL (on PostgreSQL every partition inherits the constraint)."""
    return {c["name"] for c in sa.inspect(conn).get_columns(table) if not c.get("nullable", True)}


def null_keys(conn: sa.Connection, ctx: Context) -> CheckResult:
    """No key column is NULL: proven by the column's NOT NULL constraint, else counted."""
    found: dict[str, int] = {}
    enforced: list[str] = []
    for table, columns in _KEYS.items():
        declared = _not_null_columns(conn, table)
        keys = (*columns, "date") if table in _DATED else columns
        enforced += [f"{table}.{c}" for c in keys if c in declared]
        found.update({f"{table}.{c}": 0 for c in columns if c in declared})
        counted = [c for c in columns if c not in declared]
        if counted:
            sums = ", ".join(f"sum(CASE WHEN {c} IS NULL THEN 1 ELSE 0 END) AS {c}" for c in counted)
            (row,) = fetch_rows(conn, f"SELECT {sums} FROM {table} WHERE date = :day", day=ctx.day)
            found.update({f"{table}.{c}": as_int(row[c]) for c in counted})
        if table in _DATED:  # a row without a date belongs to no day: look for it anywhere (the date index finds it)
            found[f"{table}.date"] = 0 if "date" in declared else as_int(conn.execute(
                query(f"SELECT count(*) FROM {table} WHERE date IS NULL")).scalar_one())
    bad = {k: n for k, n in found.items() if n}
    detail = "no NULL keys" if not bad else "NULL keys: " + ", ".join(f"{k} ({n} rows)" for k, n in bad.items())
    return CheckResult("null_keys", not bad, detail, {"null_counts": found, "enforced_by_not_null": enforced})


# -- values in range -------------------------------------------------------------------------------
_RANGE_KINDS = ("unknown_metric_type", "non_canonical_unit", "out_of_range")
_IN_RANGE = "every value has a known metric, its canonical unit and lies within the catalogue range"


def _suspect(metric: dict) -> bool:
    if not metric["readings"]:
        return False  # a group daily_metrics has alone: the consistency check's business
    return not metric["known"] or bool(metric["other_unit"] or metric["null_values"] or metric["buckets_out_of_range"])


def values_in_range(conn: sa.Connection, ctx: Context) -> CheckResult:
    """Every clean value has a known metric, the canonical unit and lies within the metric's range.

    The day's profile answers for a clean day (every group's min and max within its metric's range,
    no other unit); the readings are counted one by one only when it finds something to report."""
    profile = ctx.profile(conn)
    if not any(_suspect(m) for m in profile.by_metric.values()):
        figures = {"readings": profile.readings, **{k: 0 for k in _RANGE_KINDS}, "by_metric": {}}
        return CheckResult("values_in_range", True, _IN_RANGE, figures)
    cte, params = catalogue_cte()
    # NaN fails the range test too: PostgreSQL orders NaN above every number
    rows = fetch_rows(conn, f"""
        WITH {cte}
        SELECT r.metric_type, count(*) AS readings,
            sum(CASE WHEN c.metric_type IS NULL THEN 1 ELSE 0 END) AS unknown_metric_type,
            sum(CASE WHEN c.metric_type IS NOT NULL AND (r.unit IS NULL OR r.unit <> c.unit)
                     THEN 1 ELSE 0 END) AS non_canonical_unit,
            sum(CASE WHEN c.metric_type IS NOT NULL
                          AND (r.value IS NULL OR NOT (r.value >= c.low AND r.value <= c.high))
                     THEN 1 ELSE 0 END) AS out_of_range
        FROM {READINGS_TABLE} r LEFT JOIN catalogue c ON c.metric_type = r.metric_type
        WHERE r.date = :day
        GROUP BY r.metric_type""", day=ctx.day, **params)
    totals = {k: sum(as_int(r[k]) for r in rows) for k in _RANGE_KINDS}
    offending = {r["metric_type"]: {k: as_int(r[k]) for k in _RANGE_KINDS if as_int(r[k])} for r in rows
                 if any(as_int(r[k]) for k in _RANGE_KINDS)}
    figures = {"readings": sum(as_int(r["readings"]) for r in rows), **totals,
               "by_metric": dict(sorted(offending.items())[:20])}
    if not offending:
        return CheckResult("values_in_range", True, _IN_RANGE, figures)
    listed = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in totals.items() if n)
    return CheckResult("values_in_range", False, f"{listed} (metrics: {', '.join(sorted(offending)[:10])})", figures)


# -- daily_metrics against biometric_readings ------------------------------------------------------
def daily_metrics_consistency(conn: sa.Connection, ctx: Context) -> CheckResult:
    """The same (user_id, metric_type) groups, with the readings' count, sum and average (min and max
    too when compared group by group).

    The day's profile answers for a day whose every bucket agrees with daily_metrics; the groups are
    compared one by one only when a bucket disagrees, and that comparison is the verdict."""
    profile = ctx.profile(conn)
    figures = {"buckets": profile.buckets, "disagreeing_buckets": profile.disagreeing_buckets,
               "user_buckets": USER_BUCKETS, "bucket_tolerance": BUCKET_TOLERANCE, "relative_tolerance": REL_TOLERANCE}
    if not profile.disagreeing_buckets:
        figures.update({"reading_groups": profile.groups, "missing_groups": 0, "extra_groups": 0,
                        "mismatched": {k: 0 for k in MISMATCH_KINDS}, "compared": "by bucket"})
        return CheckResult("daily_metrics_consistency", True,
                           f"{profile.groups} groups agree with the readings in all {profile.buckets} buckets "
                           "(count, min, max, sum, user-weighted count and sum); every group's average matches "
                           "its sum and count",
                           figures)
    summary, examples = compare_groups(conn, ctx.day, EXAMPLES)
    counts = {k: summary[k] for k in MISMATCH_KINDS}
    figures.update({"reading_groups": summary["groups"], "missing_groups": summary["missing"],
                    "extra_groups": summary["extra"], "mismatched": counts, "compared": "group by group"})
    problems = {k: n for k, n in counts.items() if n}
    if figures["missing_groups"]:
        problems["groups missing from daily_metrics"] = figures["missing_groups"]
    if figures["extra_groups"]:
        problems["groups without readings"] = figures["extra_groups"]
    if not problems:
        return CheckResult("daily_metrics_consistency", True,
                           f"{figures['reading_groups']} groups match the readings' count, min, max, sum and average "
                           f"(compared one by one: {profile.disagreeing_buckets} buckets differed within rounding)",
                           figures)
    figures["examples"] = [_plain(r) for r in examples]
    listed = ", ".join(f"{k}: {n}" for k, n in problems.items())
    return CheckResult("daily_metrics_consistency", False, f"daily_metrics disagree with biometric_readings ({listed})",
                       figures)


def _plain(value):
    """A JSON-safe figure: NaN and infinities as text (JSON has no such numbers), dates as ISO text."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return value if isinstance(value, (int, str, type(None))) else str(value)


# -- uniqueness ------------------------------------------------------------------------------------
_UNIQUE = {  # name -> (table, key columns), unique within the day
    "reading_id": (READINGS_TABLE, ("source", "reading_id")),
    "natural_key": (READINGS_TABLE, ("user_id", "device_id", "metric_type", "created_at")),
    "daily_metrics_key": (DAILY_METRICS_TABLE, ("user_id", "metric_type")),
}


def _enforcing_key(conn: sa.Connection, table: str, columns: tuple[str, ...]) -> str | None:
    """The table's primary key or unique index that alone makes (date, columns) unique, named.

    The database then proves uniqueness (on PostgreSQL every partition carries the key):
    counting 10 M keys again would cost a large hash aggregate and could find nothing."""
    inspector = sa.inspect(conn)
    primary = inspector.get_pk_constraint(table).get("constrained_columns") or []
    if primary and set(primary) <= {"date", *columns}:
        return f"primary key ({', '.join(primary)})"
    for index in inspector.get_indexes(table):  # a unique index proves it just as well
        names = [c for c in index.get("column_names") or [] if c]
        if index.get("unique") and names and set(names) <= {"date", *columns}:
            return f"unique index ({', '.join(names)})"
    return None


def _duplicates(conn: sa.Connection, day: dt.date, table: str, columns: tuple[str, ...]) -> dict:
    keys = ", ".join(columns)
    # the window totals ride along with the first few duplicated keys: one aggregate per key
    rows = fetch_rows(conn, f"""
        SELECT {keys}, n, count(*) OVER () AS duplicated_keys, sum(n - 1) OVER () AS surplus_rows
        FROM (SELECT {keys}, count(*) AS n FROM {table} WHERE date = :day GROUP BY {keys} HAVING count(*) > 1) dup
        ORDER BY {keys} LIMIT {EXAMPLES}""", day=day)
    found = {"duplicated_keys": as_int(rows[0]["duplicated_keys"]) if rows else 0,
             "surplus_rows": as_int(rows[0]["surplus_rows"]) if rows else 0}
    if rows:
        found["examples"] = [_plain({c: r[c] for c in (*columns, "n")}) for r in rows]
    return found


def uniqueness(conn: sa.Connection, ctx: Context) -> CheckResult:
    figures: dict = {}
    problems = []
    for name, (table, columns) in _UNIQUE.items():
        figures[name] = {"table": table, "key": list(columns)}
        enforcing = _enforcing_key(conn, table, columns)
        if enforcing:
            figures[name].update({"duplicated_keys": 0, "enforced_by": enforcing})
            continue
        figures[name].update(_duplicates(conn, ctx.day, table, columns))
        if figures[name]["duplicated_keys"]:
            problems.append(f"{figures[name]['duplicated_keys']} duplicated ({', '.join(columns)}) in {table}")
    if not problems:
        return CheckResult("uniqueness", True, "(source, reading_id), (user_id, device_id, metric_type, created_at) "
                                               "and the daily_metrics key are unique", figures)
    return CheckResult("uniqueness", False, "; ".join(problems), figures)


# -- volume ----------------------------------------------------------------------------------------
def volume(conn: sa.Connection, ctx: Context) -> CheckResult:
    """Clean rows of the day against the mean of the trailing days that have data.

    The trailing days' rows are summed from their daily_metrics' sample counts, not counted in
    their readings: one row per (user, metric) instead of a week of readings read every day, and
    each day's own validate proved its sample counts equal to its readings."""
    since = ctx.day - dt.timedelta(days=min(VOLUME_HISTORY_DAYS, (ctx.day - dt.date.min).days))  # year 1 has no earlier days
    history = {str(r["date"]): as_int(r["n"]) for r in fetch_rows(
        conn, f"SELECT date, sum(sample_count) AS n FROM {DAILY_METRICS_TABLE} WHERE date >= :since AND date < :day "
              "GROUP BY date HAVING sum(sample_count) > 0 ORDER BY date", since=since, day=ctx.day)}
    today = ctx.facts.clean
    figures = {"rows": today, "history": history, "min_ratio": ctx.min_ratio, "max_ratio": ctx.max_ratio}
    if not history:
        return CheckResult("volume", True, f"no history: no readings in the {VOLUME_HISTORY_DAYS} days before "
                                           f"{ctx.day}", figures)
    mean = sum(history.values()) / len(history)
    ratio = today / mean
    figures.update({"trailing_mean": round(mean, 3), "ratio": round(ratio, 6)})
    passed = ctx.min_ratio <= ratio <= ctx.max_ratio
    verdict = "within" if passed else "outside"
    return CheckResult("volume", passed, f"{today} rows = {ratio:.3f} x the mean of {len(history)} trailing day(s) "
                                         f"({mean:.1f}), {verdict} [{ctx.min_ratio}, {ctx.max_ratio}]", figures)


# -- dead letters' reasons -------------------------------------------------------------------------
def dead_letter_reasons(conn: sa.Connection, ctx: Context) -> CheckResult:
    """Every pipeline dead letter of the day gives one of the reasons the pipeline rejects for: a
    letter with another reason accounts for a source row that no rule rejected."""
    counts = ctx.facts.rejected_by_reason
    unknown = {reason: n for reason, n in counts.items() if reason not in REJECT_REASONS}
    figures = {"by_reason": dict(sorted(counts.items(), key=lambda kv: str(kv[0]))), "unknown": unknown}
    if not unknown:
        return CheckResult("dead_letter_reasons", True, f"{sum(counts.values())} dead letters, every reason known",
                           figures)
    listed = ", ".join(f"{reason!r} ({n})" for reason, n in sorted(unknown.items(), key=lambda kv: str(kv[0])))
    return CheckResult("dead_letter_reasons", False, f"dead letters with reasons the pipeline never gives: {listed}",
                       figures)


# -- readings on their day -------------------------------------------------------------------------
def readings_on_their_day(conn: sa.Connection, ctx: Context) -> CheckResult:
    """Every reading of the day has its created_at on the day (UTC). On PostgreSQL the natural key's
    index leads with created_at, so its first and last entries answer without a scan."""
    start, end = day_window(ctx.day)
    (row,) = fetch_rows(conn, f"SELECT min(created_at) AS first, max(created_at) AS last FROM {READINGS_TABLE} "
                              "WHERE date = :day", day=ctx.day)
    first, last = (_as_utc(row[k]) for k in ("first", "last"))
    figures = {"first": first.isoformat() if first else None, "last": last.isoformat() if last else None}
    outside = [t for t in (first, last) if t is not None and not start <= t < end]
    if not outside:
        return CheckResult("readings_on_their_day", True, f"every created_at is on {ctx.day}", figures)
    off = {f"before {ctx.day}": _count(conn, ctx.day, "created_at < :start", start=start),
           f"after {ctx.day}": _count(conn, ctx.day, "created_at >= :end", end=end)}
    figures["outside"] = off
    return CheckResult("readings_on_their_day", False,
                       "readings whose created_at is not on their day: "
                       + ", ".join(f"{n} {where}" for where, n in off.items() if n)
                       + f" (first {figures['first']}, last {figures['last']})", figures)


def _as_utc(value) -> dt.datetime | None:
    """A created_at as read back: aware on PostgreSQL, naive UTC text or datetime on SQLite."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def _count(conn: sa.Connection, day: dt.date, condition: str, **bounds: dt.datetime) -> int:
    """The day's readings meeting ``condition`` on created_at (its time parameters in ``bounds``)."""
    times = [sa.bindparam(name, type_=sa.DateTime(timezone=True)) for name in bounds]
    clause = query(f"SELECT count(*) FROM {READINGS_TABLE} WHERE date = :day AND {condition}").bindparams(*times)
    if conn.dialect.name == "sqlite":  # SQLite keeps naive UTC text
        bounds = {name: value.replace(tzinfo=None) for name, value in bounds.items()}
    return as_int(conn.execute(clause, {"day": day, **bounds}).scalar_one())


CHECKS: tuple[Callable[[sa.Connection, Context], CheckResult], ...] = (
    reconciliation, dead_letter_reasons, null_keys, values_in_range, daily_metrics_consistency,
    readings_on_their_day, uniqueness, volume)


def run_all(conn: sa.Connection, ctx: Context) -> list[CheckResult]:
    results = []
    for check in CHECKS:
        started = time.monotonic()
        result = check(conn, ctx)
        log.log(logging.INFO if result.passed else logging.ERROR, "check %s %s (%.1f s): %s", result.name,
                "passed" if result.passed else "FAILED", time.monotonic() - started, result.detail)
        results.append(result)
    return results

