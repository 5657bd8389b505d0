"""The staged day checked against the transform's manifest before the warehouse is touched.

The load replaces the day: staged files that are not the ones the transform wrote (a part file
deleted or emptied, a file copied twice, another day's files under this day's path) would replace
a good day with less or with another day's rows, and validate would only find out afterwards.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from biometrics_core.errors import InputError
from biometrics_core.manifest import manifest_path
from biometrics_core.redact import one_line, redact
from biometrics_core.staging import Staging


def _expected_counts(manifest: dict) -> dict[str, object]:
    details = manifest.get("details") if isinstance(manifest.get("details"), dict) else {}
    return {"readings": manifest.get("rows_out"), "dead letters": manifest.get("rows_rejected_total"),
            "daily metrics": details.get("daily_metrics_rows")}


def _dates(dataset: ds.Dataset) -> set[dt.date]:
    """The distinct values of ``date``, from the files' statistics where every row group has them."""
    found: set[dt.date] = set()
    for fragment in dataset.get_fragments():
        metadata = fragment.metadata
        index = metadata.schema.to_arrow_schema().get_field_index("date")  # there: the columns were checked
        groups = [metadata.row_group(i).column(index).statistics for i in range(metadata.num_row_groups)]
        if not all(s is not None and s.has_min_max and s.null_count == 0 for s in groups):
            table = fragment.to_table(columns=["date"])
            found |= set(pc.unique(table.column("date")).to_pylist())
            continue
        for stats in groups:
            found |= {stats.min, stats.max}
    return found


def _kind(type_: pa.DataType) -> str:
    """What a column holds, whatever its physical width or time zone spelling."""
    for kind, test in (("integer", pa.types.is_integer), ("number", pa.types.is_floating),
                       ("text", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
                       ("time", pa.types.is_timestamp), ("date", pa.types.is_date)):
        if test(type_):
            return kind
    return str(type_)


def _check_columns(name: str, dataset: ds.Dataset) -> None:
    for fragment in dataset.get_fragments():
        physical = fragment.physical_schema
        wrong = [f"{field.name} {_kind(physical.field(field.name).type) if field.name in physical.names else 'missing'}"
                 for field in dataset.schema
                 if field.name not in physical.names or _kind(physical.field(field.name).type) != _kind(field.type)]
        if wrong:
            raise InputError(f"the staged {name} ({fragment.path}) do not have the transform's columns "
                             f"({', '.join(wrong)}): rerun the transform")


def check_staged_day(staging: Staging, day: dt.date, transform: dict,
                     datasets: dict[str, ds.Dataset]) -> dict[str, int]:
    """The rows of each staged output; InputError unless they are the transform's: readable, with
    its columns, as many rows as its manifest says, and every row of ``day``."""
    rel = manifest_path("transform", "readings")
    expected = _expected_counts(transform)
    rows = {}
    for name, dataset in datasets.items():
        try:
            rows[name] = _check_dataset(name, dataset, expected.get(name), rel, staging, day)
        except (pa.ArrowException, OSError) as exc:
            detail = one_line(redact(str(exc)))
            raise InputError(f"the staged {name} are not readable Parquet ({detail}): rerun the transform") from None
    return rows


def _check_dataset(name: str, dataset: ds.Dataset, want: object, rel: str, staging: Staging, day: dt.date) -> int:
    _check_columns(name, dataset)
    if not isinstance(want, int) or isinstance(want, bool):
        raise InputError(f"{staging.uri(rel)} gives no row count of the {name}: rerun the transform")
    rows = dataset.count_rows()
    if rows != want:
        raise InputError(f"the staged {name} have {rows} rows, the transform wrote {want}: "
                         f"the staging was changed after the transform; rerun it for {day}")
    others = sorted(str(d) for d in _dates(dataset) if d != day)
    if others:
        shown = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        raise InputError(f"the staged {name} hold rows of {shown}, not {day}: "
                         "the staging path holds another day's files")
    return rows
