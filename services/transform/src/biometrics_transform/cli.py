"""``biometrics-transform``: clean readings, daily metrics and dead letters of the day, as Parquet."""

from __future__ import annotations

import datetime as dt
import logging

import duckdb
import pyarrow as pa

from biometrics_core import schemas, settings
from biometrics_core.cli import StageRun, stage_command, stage_group
from biometrics_core.errors import InputError
from biometrics_core.manifest import required_upstream_manifest

from . import rules

log = logging.getLogger(__name__)

main = stage_group("transform", "Transform stage of the BIOMETRICS ETL.")

# written in this order: the daily metrics are aggregated from the clean readings' file
OUTPUTS = {
    schemas.TRANSFORM_READINGS: rules.CLEAN,
    schemas.TRANSFORM_DEAD_LETTERS: rules.DEAD_LETTERS,
    schemas.TRANSFORM_DAILY_METRICS: rules.DAILY_METRICS,
}


# zstd at level 1, as the extract's Arrow writer uses it: DuckDB's default level 3 makes the
# clean readings' file 2 % smaller for about 20 % more of the transform's writing time.
# Version 2 encodings (delta for ids and times, delta lengths for device ids): at 9.5 M clean rows
# the write takes 2.9 s instead of 3.4, the file is 22 % smaller, and Arrow and DuckDB read it as
# fast or faster.
# Dictionaries of at most 1,000 entries, as the extract keeps them to the columns whose values
# repeat: source, metric type and unit keep theirs, while on device ids (three per user), values,
# ids and times the writer gives up at once instead of filling a dictionary it then drops. At
# 10 M rows the day's write costs about 1 CPU-s less (4.8-5.5 -> 3.7-4.1) for a file 5 % larger.
PARQUET_OPTIONS = "COMPRESSION zstd, COMPRESSION_LEVEL 1, PARQUET_VERSION V2, DICTIONARY_SIZE_LIMIT 1000"


def _staged_files(run: StageRun) -> list[str]:
    """The extract output's files; checked before anything is written."""
    staging = run.staging
    if not staging.exists(schemas.EXTRACT_READINGS):
        raise InputError(f"missing staging input {staging.uri(schemas.EXTRACT_READINGS)}: "
                         "run biometrics-extract for this date first")
    files = staging.list_files(schemas.EXTRACT_READINGS, (".parquet",))
    if not files:
        raise InputError(f"no Parquet files in {staging.uri(schemas.EXTRACT_READINGS)}")
    return files


def _local_inputs(run: StageRun, files: list[str], work) -> list[str]:
    """Local paths of the extract output (downloaded first when staging is remote)."""
    staging = run.staging
    if staging.is_local:
        return [staging.path(f) for f in files]
    local = []
    for index, rel in enumerate(files):
        target = work / "input" / f"{index:05d}.parquet"
        target.parent.mkdir(exist_ok=True)
        staging.download(rel, target)
        local.append(str(target))
    return local


def _duckdb_type(field) -> str:
    """How DuckDB names the type it reads a column of the staged schema as."""
    if pa.types.is_timestamp(field.type):
        return "TIMESTAMP WITH TIME ZONE" if field.type.tz else "TIMESTAMP"
    return {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR"}[field.type]


# The extract's columns (the core's staged schema) as DuckDB reads them from its Parquet files
_STAGED_TYPES = {field.name: _duckdb_type(field) for field in schemas.READINGS}


def _open_staged(con, inputs: list[str], where: str) -> tuple[int, int]:
    """The ``staged`` view over the extract's files; its rows, and how many have no source.
    InputError when the files are not Parquet with the extract's columns (truncated, another file,
    a column missing or of another type)."""
    try:
        con.execute(f"CREATE VIEW staged AS SELECT *, file_index, file_row_number "
                    f"FROM read_parquet({rules.sql_list(inputs)})")
        found = {name: kind for name, kind, *_ in con.execute("DESCRIBE staged").fetchall()}
        wrong = [f"{name} {found.get(name, 'missing')}" for name, kind in _STAGED_TYPES.items() if found.get(name) != kind]
        if wrong:
            raise InputError(f"the staged readings under {where} do not have the extract's columns "
                             f"({', '.join(wrong)}): rerun the extract")
        return con.execute("SELECT count(*), count(*) - count(source) FROM staged").fetchone()
    except duckdb.Error as exc:
        detail = str(exc).strip().splitlines()[0]
        raise InputError(f"the staged readings under {where} are not the extract's Parquet files ({detail}): "
                         "rerun the extract") from None


@stage_command(main, "readings", help="Clean, normalise, deduplicate and aggregate the day's staged readings.")
def readings(run: StageRun):
    # DuckDB starts every thread it is told to: 100,000 of them hung the stage instead of failing it
    threads = settings.get_optional_int("BIOMETRICS_THREADS")
    memory_limit = settings.get_size("BIOMETRICS_MEMORY_LIMIT")
    now = dt.datetime.now(dt.timezone.utc)
    files = _staged_files(run)
    # (another day's manifest stops the run too, before anything is written)
    extracted = required_upstream_manifest(run.staging, "extract", run.day,
                                           "the transform checks the staged files against it")
    with run.staging.workdir() as work:
        inputs = _local_inputs(run, files, work)
        con = rules.connect(memory_limit, threads, str(work / "duckdb.tmp"))
        try:
            # a row is known by its file's position in the list and its row number in that file:
            # two integers to join on (joining on the path, as text, cost 0.3 CPU-s more at 10 M rows)
            # (the source's count in the same pass: the extract names every row's source, so a row
            # without one is a damaged file, not a record to dead-letter, and the queue requires it)
            rows_in, sourceless = _open_staged(con, inputs, run.staging.uri(schemas.EXTRACT_READINGS))
            if sourceless:
                raise InputError(f"the staged readings have {sourceless} rows without a source: the extract "
                                 f"names every row's source, so the files are damaged; rerun it for {run.day}")
            if rows_in != extracted.get("rows_out"):
                raise InputError(f"the staged readings have {rows_in} rows, the extract wrote "
                                 f"{extracted.get('rows_out')}: the staging was changed after the extract; "
                                 f"rerun it for {run.day}")
            # (a manifest that does not say, from before the extract looked, has its ids checked)
            rules.classify(con, run.day, extracted.get("details", {}).get("database_ids_unique") is True)
            written = {rel: work / "out" / rel / "part-0.parquet" for rel in OUTPUTS}
            for rel, query in OUTPUTS.items():
                written[rel].parent.mkdir(parents=True)
                sql = rules.render(query, run.day, now, clean=str(written[schemas.TRANSFORM_READINGS]))
                con.execute(f"COPY ({sql}) TO {rules.sql_list([str(written[rel])])[1:-1]} "
                            f"(FORMAT parquet, {PARQUET_OPTIONS})")
            # the outcomes, counted from what was written (row counts come from the Parquet footers)
            read = {rel: f"read_parquet({rules.sql_list([str(path)])})" for rel, path in written.items()}
            counts = dict(con.execute(f"SELECT reason, count(*) FROM {read[schemas.TRANSFORM_DEAD_LETTERS]} "
                                      "GROUP BY reason").fetchall())
            (clean,) = con.execute(f"SELECT count(*) FROM {read[schemas.TRANSFORM_READINGS]}").fetchone()
            (groups,) = con.execute(f"SELECT count(*) FROM {read[schemas.TRANSFORM_DAILY_METRICS]}").fetchone()
        finally:
            con.close()
        run.publish({rel: path.parent for rel, path in written.items()})
    run.manifest.rows_in = rows_in
    run.manifest.rows_out = clean
    for reason, count in sorted(counts.items()):
        run.manifest.reject(reason, count)
    listed = (schemas.TRANSFORM_READINGS, schemas.TRANSFORM_DAILY_METRICS, schemas.TRANSFORM_DEAD_LETTERS)
    run.manifest.outputs = [run.staging.uri(rel) for rel in listed]
    run.manifest.details = {"daily_metrics_rows": groups}
    log.info("transformed %d rows: %d clean, %d rejected %s", rows_in, clean, run.manifest.rejected_total,
             run.manifest.rows_rejected)
    return run.manifest


