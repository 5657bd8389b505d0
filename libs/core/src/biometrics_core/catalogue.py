"""The metric catalogue: canonical units, accepted other units and their conversions, valid ranges.

A value in an accepted unit becomes canonical as ``(value - shift) * factor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    low: float
    high: float
    # other accepted unit -> (shift, factor)
    conversions: dict[str, tuple[float, float]] = field(default_factory=dict)


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("heart_rate", "bpm", 25, 250),
    Metric("spo2", "percent", 70, 100),
    Metric("steps", "count", 0, 100_000),
    Metric("skin_temperature", "celsius", 25, 45, {"fahrenheit": (32.0, 5.0 / 9.0)}),
    Metric("respiratory_rate", "breaths_per_min", 4, 60),
    Metric("hrv_rmssd", "ms", 1, 300),
    Metric("sleep_minutes", "minutes", 0, 1440, {"hours": (0.0, 60.0)}),
    Metric("blood_glucose", "mg_dl", 20, 600, {"mmol_l": (0.0, 18.016)}),
)}

# in the order the transform applies them: a record is rejected with the first it breaks
REJECT_REASONS = ("missing_key", "device_id_too_long", "outside_data_day", "unknown_metric_type", "unknown_unit",
                  "missing_value", "out_of_range", "conflicting_reading_id", "duplicate")

# the longest device_id a reading may have, in UTF-8 bytes: the warehouse's natural key is a B-tree
# index, whose entries PostgreSQL caps at 2704 bytes (after compression), so a longer (random) id
# would make the load refuse the whole day; the source's column is TEXT and vendor files have no limit
MAX_DEVICE_ID_BYTES = 1024


def unit_rows() -> list[tuple[str, str, float, float, str, float, float]]:
    """(metric_type, unit, shift, factor, canonical_unit, low, high) for every accepted unit."""
    rows = []
    for m in METRICS.values():
        rows.append((m.name, m.unit, 0.0, 1.0, m.unit, float(m.low), float(m.high)))
        for unit, (shift, factor) in m.conversions.items():
            rows.append((m.name, unit, shift, factor, m.unit, float(m.low), float(m.high)))
    return rows
