"""Arrow record batches to PostgreSQL's bulk path: CSV chunks for ``COPY … FROM STDIN``.

Arrow writes the CSV in C++ (shortest round-trip floats), so no Python object is made per row.
Timestamps go out as naive UTC text: formatting time-zone-aware values costs Arrow ten times more,
and the loading session runs with ``TimeZone = 'UTC'``, so PostgreSQL reads the same instants.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
from pgpq import ArrowToPostgresBinaryEncoder

_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="needed")


def csv_chunks(batches: Iterable[pa.RecordBatch], columns: list[str], counter: list[int] | None = None) -> Iterator[bytes]:
    for batch in batches:
        if batch.num_rows == 0:
            continue
        buffer = io.BytesIO()
        pacsv.write_csv(_naive_utc(batch.select(columns)), buffer, _OPTIONS)
        if counter is not None:
            counter[0] += batch.num_rows
        yield buffer.getvalue()


def _naive_utc(batch: pa.RecordBatch) -> pa.RecordBatch:
    if not any(pa.types.is_timestamp(f.type) and f.type.tz for f in batch.schema):
        return batch
    fields = [pa.field(f.name, pa.timestamp(f.type.unit)) if pa.types.is_timestamp(f.type) and f.type.tz else f
              for f in batch.schema]
    return batch.cast(pa.schema(fields))


def binary_chunks(batches: Iterable[pa.RecordBatch], schema: pa.Schema, columns: list[str],
                  counter: list[int] | None = None) -> Iterator[bytes]:
    """PostgreSQL's binary COPY format, encoded from Arrow by pgpq (Rust): the server parses no
    text (about 3 x less server time than CSV for the readings). The Arrow types must match the
    table's column types exactly (no json: dead letters stay CSV)."""
    encoder = ArrowToPostgresBinaryEncoder(pa.schema([schema.field(c) for c in columns]))
    yield bytes(encoder.write_header())
    for batch in batches:
        if batch.num_rows:
            yield bytes(encoder.write_batch(batch.select(columns)))
            if counter is not None:
                counter[0] += batch.num_rows
    yield bytes(encoder.finish())


def copy_sql(table: str, columns: list[str], fmt: str = "csv", freeze: bool = False) -> str:
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT {fmt}{', FREEZE' if freeze else ''})"
