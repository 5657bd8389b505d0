"""The transform rules as one columnar DuckDB program: no Python loop per row.

Every input row gets exactly one outcome: clean, or rejected with a reason (the first rule it
breaks, in the order of ``REJECT_REASONS``), so clean + rejected always equals the input.
Among the rows that pass the other rules, a reading_id given to two different readings (by a
vendor, or by a source without a key on it) sets all of them aside (``conflicting_reading_id``),
then duplicates of a natural key lose to the lowest reading_id (``duplicate``), so a broken or
ambiguous record never pushes out a good one.

The rules are evaluated on every staged row once per output that needs every row (the clean
readings, the dead letters). Finding the duplicates reads the staged rows twice more, the first
time only their keys' hash, the second time judging only the candidates; the daily metrics are
aggregated from the clean output and the counts come from the outputs.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from biometrics_core.catalogue import MAX_DEVICE_ID_BYTES, unit_rows
from biometrics_core.dates import day_window
from biometrics_core.schemas import DATABASE_SOURCE

# The rules as a SELECT over a relation of staged rows: every column, the canonical value and unit,
# and the first rule the row breaks (NULL for a clean row).
_JUDGE = f"""
WITH src AS (
    SELECT r.*, coalesce(nullif(r.unit, ''), m.canonical_unit) AS unit_in, m.canonical_unit,
           u.shift, u.factor, u.low, u.high
    FROM {{rows}} r
    LEFT JOIN metric_catalogue m ON m.metric_type = r.metric_type
    LEFT JOIN unit_catalogue u ON u.metric_type = r.metric_type AND u.unit = coalesce(nullif(r.unit, ''), m.canonical_unit)
)
SELECT *, (value - shift) * factor AS canonical_value,
    CASE
        -- the source's schema says NOT NULL (and the vendor parser requires them), but a source that
        -- breaks it must not have the warehouse refuse the whole day
        WHEN reading_id IS NULL OR user_id IS NULL OR device_id IS NULL OR created_at IS NULL
             OR ingested_at IS NULL THEN 'missing_key'
        WHEN strlen(device_id) > {MAX_DEVICE_ID_BYTES} THEN 'device_id_too_long'
        WHEN created_at < $day_start OR created_at >= $day_end THEN 'outside_data_day'
        WHEN canonical_unit IS NULL THEN 'unknown_metric_type'
        WHEN shift IS NULL THEN 'unknown_unit'
        WHEN value IS NULL OR isnan(value) THEN 'missing_value'
        WHEN NOT ((value - shift) * factor BETWEEN low AND high) THEN 'out_of_range'
    END AS rule_reason
FROM src
"""

# the natural key that makes two readings duplicates: hashed to find the candidates, then ranked
# exactly by it (the two must be the same columns)
_DUPLICATE_KEY = "user_id, device_id, metric_type, created_at"
_KEY_HASH = f"hash({_DUPLICATE_KEY})"
_VENDOR_ROW = f"source <> '{DATABASE_SOURCE}'"

_CLASSIFY = f"""
CREATE VIEW judged AS {_JUDGE.format(rows="staged")};

-- A reading_id names one reading of its source. The application database's primary key guarantees
-- it for the database's rows; a vendor file guarantees nothing, and the warehouse's key (reading_id,
-- source, date) would refuse the whole day. An id given to two different readings of the day (two
-- natural keys, among the records that pass the rules) is ambiguous: each of its records becomes a
-- dead letter and none is guessed into the warehouse. Only the rows whose ids nothing guarantees are
-- looked at ($unkeyed_rows): the vendors' (a day's vendor records are few; the database's ten million
-- are skipped by the parquet statistics of their files), and the database's too when the extract
-- found no key on its reading_id.
CREATE TEMP TABLE unkeyed_passed AS
SELECT source, reading_id, {_DUPLICATE_KEY}, file_index, file_row_number
FROM ({_JUDGE.format(rows="(SELECT * FROM staged WHERE $unkeyed_rows)")})
WHERE rule_reason IS NULL;

CREATE TEMP TABLE conflicting_ids AS
SELECT source, reading_id, count(*) AS records FROM unkeyed_passed
GROUP BY source, reading_id HAVING count(DISTINCT ({_DUPLICATE_KEY})) > 1;

-- Duplicates are rare (about 1 % of a day). One streaming aggregate over a 64-bit hash of the key
-- finds the candidate keys; only the candidate rows are then judged and ranked exactly (a hash
-- collision merely adds a candidate, which ranks 1). No window over the whole day and nothing
-- materialised per row, so memory stays small whatever the day's volume. The candidates are
-- hashed from the staged rows as they are, before any rule: the rules' joins cost this pass
-- 0.9 s at 10 M rows, and a key shared with a broken row only adds candidates (which the ranking
-- below leaves out).
CREATE TEMP TABLE dup_hashes AS
SELECT {_KEY_HASH} AS h FROM staged GROUP BY 1 HAVING count(*) > 1;

CREATE VIEW dup_candidates AS
{_JUDGE.format(rows=f"(SELECT * FROM staged WHERE {_KEY_HASH} IN (SELECT h FROM dup_hashes))")};

-- The rows that pass the rules but are set aside, with their reason and detail (about 1 % of a
-- day): the records of a conflicting id, then the duplicates that lose to another clean row of
-- their key. Only rows that pass the rules (and whose id is not in conflict) are ranked, so a broken
-- or ambiguous record never pushes out a good one; a tie on the id goes to the first staged row.
CREATE TEMP TABLE set_aside AS
SELECT v.file_index, v.file_row_number, 'conflicting_reading_id' AS reason,
       'reading_id ' || v.reading_id || ' of ' || v.source || ' names ' || c.records
       || ' records of the day that differ in ({_DUPLICATE_KEY}): none is kept' AS detail
FROM unkeyed_passed v JOIN conflicting_ids c USING (source, reading_id)
UNION ALL
SELECT file_index, file_row_number, 'duplicate',
       'duplicate of ' || kept_record || ' (same {_DUPLICATE_KEY})' FROM (
    SELECT file_index, file_row_number,
           row_number() OVER w AS dup_rank,
           first_value(source || ':' || reading_id) OVER w AS kept_record
    FROM dup_candidates
    WHERE rule_reason IS NULL
      AND NOT EXISTS (SELECT 1 FROM conflicting_ids c
                      WHERE c.source = dup_candidates.source AND c.reading_id = dup_candidates.reading_id)
    WINDOW w AS (PARTITION BY {_DUPLICATE_KEY}
                 ORDER BY reading_id, {_VENDOR_ROW}, source, file_index, file_row_number)
) WHERE dup_rank > 1;
"""

CLEAN = """
SELECT $day::DATE AS date, source, reading_id, user_id, device_id, metric_type,
       canonical_value AS value, canonical_unit AS unit, created_at, ingested_at
FROM judged j
WHERE rule_reason IS NULL
  AND NOT EXISTS (SELECT 1 FROM set_aside d WHERE d.file_row_number = j.file_row_number AND d.file_index = j.file_index)
"""

# from the clean output just written: a fraction of the bytes, no rule evaluated twice. In the
# warehouse's key order: the load's COPY then appends to the primary key instead of inserting all
# over it (0.9 s -> 0.4 s of server time for 312 k groups; the sort here takes a few hundredths)
DAILY_METRICS = """
SELECT date, user_id, metric_type, avg(value) AS value, min(value) AS min_value, max(value) AS max_value,
       sum(value) AS sum_value, count(*)::BIGINT AS sample_count
FROM read_parquet($clean)
GROUP BY date, user_id, metric_type
ORDER BY date, user_id, metric_type
"""

# JSON has no NaN or infinities: they are kept as the strings JavaScript and Python's json print
# for them (DuckDB's own text for them is 'nan' and 'inf')
_JSON_VALUE = ("CASE WHEN value IS NULL THEN NULL WHEN isnan(value) THEN to_json('NaN') "
               "WHEN value > 0 AND isinf(value) THEN to_json('Infinity') "
               "WHEN isinf(value) THEN to_json('-Infinity') ELSE to_json(value) END")
_ISO = "strftime(CAST({col} AS TIMESTAMP), '%Y-%m-%dT%H:%M:%S.%fZ')"

DEAD_LETTERS = f"""
SELECT $day::DATE AS date, 'transform' AS stage, source, CAST(reading_id AS VARCHAR) AS source_record_id,
    CAST(json_object('reading_id', reading_id, 'user_id', user_id, 'device_id', device_id,
                     'metric_type', metric_type, 'value', {_JSON_VALUE}, 'unit', unit,
                     'created_at', {_ISO.format(col='created_at')},
                     'ingested_at', {_ISO.format(col='ingested_at')}, 'source', source) AS VARCHAR) AS record,
    coalesce(rule_reason, d.reason) AS reason,
    CASE rule_reason
        WHEN 'missing_key' THEN concat_ws(', ', CASE WHEN reading_id IS NULL THEN 'reading_id' END,
                                          CASE WHEN user_id IS NULL THEN 'user_id' END,
                                          CASE WHEN device_id IS NULL THEN 'device_id' END,
                                          CASE WHEN created_at IS NULL THEN 'created_at' END,
                                          CASE WHEN ingested_at IS NULL THEN 'ingested_at' END) || ' is NULL'
        WHEN 'device_id_too_long' THEN 'device_id of ' || strlen(device_id) || ' bytes is longer than '
                                       || {MAX_DEVICE_ID_BYTES}
        WHEN 'outside_data_day' THEN 'created_at ' || {_ISO.format(col='created_at')} || ' is not on ' || $day
        WHEN 'unknown_metric_type' THEN CASE WHEN metric_type IS NULL THEN 'metric_type is NULL'
                                        ELSE 'metric_type ''' || metric_type || ''' is not in the catalogue' END
        WHEN 'unknown_unit' THEN 'unit ''' || unit_in || ''' is not accepted for ' || metric_type
                                 || ' (canonical: ' || canonical_unit || ')'
        WHEN 'missing_value' THEN CASE WHEN value IS NULL THEN 'value is NULL' ELSE 'value is NaN' END
        WHEN 'out_of_range' THEN 'value ' || CAST(canonical_value AS VARCHAR) || ' ' || canonical_unit
                                 || ' is outside [' || CAST(low AS VARCHAR) || ', ' || CAST(high AS VARCHAR) || ']'
        ELSE d.detail
    END AS detail,
    $now::TIMESTAMPTZ AS created_at
FROM judged j LEFT JOIN set_aside d ON d.file_row_number = j.file_row_number AND d.file_index = j.file_index
WHERE j.rule_reason IS NOT NULL OR d.file_row_number IS NOT NULL
"""


def connect(memory_limit: str, threads: int | None, temp_dir: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": temp_dir,
                                 "preserve_insertion_order": False,
                                 **({"threads": threads} if threads else {})})
    # DuckDB casts and formats TIMESTAMPTZ in its session time zone, the host's by default: the dead
    # letters' records and details say their times in UTC, with a Z. (Set after connecting: as a
    # connect option it is applied before the built-in ICU extension is loaded, and refused.)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TEMP TABLE unit_catalogue (metric_type VARCHAR, unit VARCHAR, shift DOUBLE, factor DOUBLE, "
                "canonical_unit VARCHAR, low DOUBLE, high DOUBLE)")
    con.executemany("INSERT INTO unit_catalogue VALUES (?, ?, ?, ?, ?, ?, ?)", unit_rows())
    con.execute("CREATE TEMP TABLE metric_catalogue AS SELECT metric_type, canonical_unit FROM unit_catalogue "
                "WHERE unit = canonical_unit")
    return con


def render(query: str, day: dt.date, now: dt.datetime | None = None, clean: str = "") -> str:
    """Inline the run's constants (DuckDB cannot prepare COPY or DDL statements)."""
    start, end = day_window(day)
    now = now or dt.datetime.now(dt.timezone.utc)
    return (query.replace("$clean", sql_list([clean]))
            .replace("$day_start", f"TIMESTAMPTZ '{start.isoformat()}'")
            .replace("$day_end", f"TIMESTAMPTZ '{end.isoformat()}'")
            .replace("$day", f"'{day.isoformat()}'")
            .replace("$now", f"'{now.isoformat()}'"))


def sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def classify(con: duckdb.DuckDBPyConnection, day: dt.date, database_ids_unique: bool = True) -> None:
    """Judge every row of the ``staged`` view (the ``judged`` view) and find the duplicates that
    lose to another row of their key or whose id is in conflict (the ``set_aside`` table).
    ``database_ids_unique``: the source's key guarantees the database rows' ids (else they are
    checked for conflicts as the vendors' are)."""
    con.execute(render(_CLASSIFY, day).replace("$unkeyed_rows", _VENDOR_ROW if database_ids_unique else "TRUE"))
