"""Arrow schemas of the staged datasets: the data contract between the stages."""

from __future__ import annotations

import pyarrow as pa

UTC_MICROS = pa.timestamp("us", tz="UTC")

# extract -> transform: source records as read, plus where they came from
READINGS = pa.schema([
    ("reading_id", pa.int64()),
    ("user_id", pa.int64()),
    ("device_id", pa.string()),
    ("metric_type", pa.string()),
    ("value", pa.float64()),
    ("unit", pa.string()),
    ("created_at", UTC_MICROS),
    ("ingested_at", UTC_MICROS),
    ("source", pa.string()),
])

# transform -> load: the clean readings (canonical value and unit) of one day
CLEAN_READINGS = pa.schema([
    ("date", pa.date32()),
    ("source", pa.string()),
    ("reading_id", pa.int64()),
    ("user_id", pa.int64()),
    ("device_id", pa.string()),
    ("metric_type", pa.string()),
    ("value", pa.float64()),
    ("unit", pa.string()),
    ("created_at", UTC_MICROS),
    ("ingested_at", UTC_MICROS),
])

DAILY_METRICS = pa.schema([
    ("date", pa.date32()),
    ("user_id", pa.int64()),
    ("metric_type", pa.string()),
    ("value", pa.float64()),
    ("min_value", pa.float64()),
    ("max_value", pa.float64()),
    ("sum_value", pa.float64()),
    ("sample_count", pa.int64()),
])

DEAD_LETTERS = pa.schema([
    ("date", pa.date32()),
    ("stage", pa.string()),
    ("source", pa.string()),
    ("source_record_id", pa.string()),
    ("record", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("created_at", UTC_MICROS),
])

# where each stage puts its outputs, relative to the staging path
EXTRACT_READINGS = "extract/readings"
TRANSFORM_READINGS = "transform/readings"
TRANSFORM_DAILY_METRICS = "transform/daily_metrics"
TRANSFORM_DEAD_LETTERS = "transform/dead_letters"
DATABASE_SOURCE = "database"
