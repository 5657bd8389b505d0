"""Arrow record batches to PostgreSQL's bulk path: CSV chunks for ``COPY … FROM STDIN``.

Arrow writes the CSV in C++ (shortest round-trip floats, ISO timestamps with ``Z``), so no Python
object is made per row.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv

_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="needed")


def csv_chunks(batches: Iterable[pa.RecordBatch], columns: list[str], counter: list[int] | None = None) -> Iterator[bytes]:
    for batch in batches:
        if batch.num_rows == 0:
            continue
        buffer = io.BytesIO()
        pacsv.write_csv(batch.select(columns), buffer, _OPTIONS)
        if counter is not None:
            counter[0] += batch.num_rows
        yield buffer.getvalue()


def copy_sql(table: str, columns: list[str]) -> str:
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)"
