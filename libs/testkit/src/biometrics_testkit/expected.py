"""An independent reference computation of the daily job, in plain Python, row by row.

Tests compare the warehouse with this. It deliberately shares no code with the stages: the rules
are written out again from the data contract (issue #2), so a bug in the transform's SQL cannot
hide by being mirrored here.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

MAX_DEVICE_ID_BYTES = 1024  # the data contract's longest device_id, in UTF-8 bytes (README)
# metric -> canonical unit, {accepted unit: converter}, low, high
_RULES = {
    "heart_rate": ("bpm", {}, 25, 250),
    "spo2": ("percent", {}, 70, 100),
    "steps": ("count", {}, 0, 100000),
    "skin_temperature": ("celsius", {"fahrenheit": lambda v: (v - 32.0) * (5.0 / 9.0)}, 25, 45),
    "respiratory_rate": ("breaths_per_min", {}, 4, 60),
    "hrv_rmssd": ("ms", {}, 1, 300),
    "sleep_minutes": ("minutes", {"hours": lambda v: v * 60.0}, 0, 1440),
    "blood_glucose": ("mg_dl", {"mmol_l": lambda v: v * 18.016}, 20, 600),
}


@dataclass
class Expected:
    clean: dict[tuple[str, int], dict] = field(default_factory=dict)        # (source, reading_id) -> row
    # ((source, reading_id), reason) -> how many records: a vendor can repeat an id
    rejected: Counter[tuple[tuple[str, int], str]] = field(default_factory=Counter)
    daily_metrics: dict[tuple[int, str], tuple[float, float, float, float, int]] = field(default_factory=dict)

    def reject_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for (_key, reason), records in self.rejected.items():
            counts[reason] += records
        return dict(counts)


def _as_utc(value) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def compute(day: dt.date, records: list[dict]) -> Expected:
    """``records``: dicts with the source columns and ``source`` ('database' or a vendor name).

    Database records outside the day must already be left out (they belong to other days);
    vendor records outside the day are rejected as ``outside_data_day``.
    """
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(days=1)
    out = Expected()
    candidates = []
    for r in records:
        key = (r["source"], None if r["reading_id"] is None else int(r["reading_id"]))
        if any(r[k] is None for k in ("reading_id", "user_id", "device_id", "created_at", "ingested_at")):
            out.rejected[key, "missing_key"] += 1
            continue
        if len(r["device_id"].encode("utf-8")) > MAX_DEVICE_ID_BYTES:
            out.rejected[key, "device_id_too_long"] += 1
            continue
        created = _as_utc(r["created_at"])
        rule = _RULES.get(r["metric_type"])
        value = r["value"]
        if not (start <= created < end):
            out.rejected[key, "outside_data_day"] += 1
            continue
        if rule is None:
            out.rejected[key, "unknown_metric_type"] += 1
            continue
        canonical, others, low, high = rule
        unit = r["unit"] if r["unit"] not in (None, "") else canonical
        if unit != canonical and unit not in others:
            out.rejected[key, "unknown_unit"] += 1
            continue
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out.rejected[key, "missing_value"] += 1
            continue
        value = float(value)
        if unit != canonical:
            value = others[unit](value)
        if not (low <= value <= high):
            out.rejected[key, "out_of_range"] += 1
            continue
        candidates.append((key, r, value, created, canonical))
    # an id given to readings with different natural keys: all of them rejected, none guessed (the
    # application database's ids are its primary key, which makes this a no-op for them, but a
    # source without that key is held to the rule too)
    natural_keys: dict[tuple[str, int], set] = defaultdict(set)
    for key, r, _value, created, _unit in candidates:
        natural_keys[key].add((int(r["user_id"]), r["device_id"], r["metric_type"], created))
    conflicting = {key for key, keys in natural_keys.items() if len(keys) > 1}
    for cand in [c for c in candidates if c[0] in conflicting]:
        out.rejected[cand[0], "conflicting_reading_id"] += 1
    # duplicates among the rest: keep the lowest reading_id (database before vendors on ties)
    best: dict[tuple, tuple] = {}
    for cand in [c for c in candidates if c[0] not in conflicting]:
        key, r, _value, created, _unit = cand
        dkey = (int(r["user_id"]), r["device_id"], r["metric_type"], created)
        rank = (key[1], key[0] != "database", key[0])
        if dkey not in best or rank < best[dkey][0]:
            if dkey in best:
                out.rejected[best[dkey][1][0], "duplicate"] += 1
            best[dkey] = (rank, cand)
        else:
            out.rejected[key, "duplicate"] += 1
    groups: dict[tuple[int, str], list[float]] = defaultdict(list)
    for _rank, (key, r, value, created, unit) in best.values():
        out.clean[key] = {"user_id": int(r["user_id"]), "device_id": r["device_id"],
                          "metric_type": r["metric_type"], "value": value, "unit": unit, "created_at": created}
        groups[(int(r["user_id"]), r["metric_type"])].append(value)
    for gkey, values in groups.items():
        out.daily_metrics[gkey] = (math.fsum(values) / len(values), min(values), max(values), math.fsum(values),
                                   len(values))
    return out
