"""Vendor files: CSV or JSON Lines under ``<inbox>/<vendor>/<date>/`` with the source fields.

A file is taken whole or not at all: one malformed line makes the file malformed (exit 2, nothing
staged), so a vendor's delivery is never half-loaded. Values that parse but break the data rules
(NaN, unknown units, …) are not malformed: the transform dead-letters them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from dataclasses import dataclass

import pyarrow as pa

from biometrics_core.errors import InputError
from biometrics_core.schemas import DATABASE_SOURCE, READINGS
from biometrics_core.staging import Staging

REQUIRED = ("reading_id", "user_id", "device_id", "metric_type", "value", "unit", "created_at")
SUFFIXES = (".csv", ".jsonl", ".ndjson")


@dataclass
class VendorFile:
    vendor: str
    uri: str
    table: pa.Table


class _Malformed(ValueError):
    pass


def _shown(value) -> str:
    """A field's value as a message quotes it: short, since a malformed field may hold a whole
    record (a nested object with a patient's data) and the message goes to the task's log."""
    text = repr(value)
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    return text if len(text) <= 40 else text[:39] + "…"


_INT64 = range(-2**63, 2**63)  # the staged column's type (and the warehouse's BIGINT)


_WHOLE_NUMBER = re.compile(r"\s*-?[0-9]+\s*")  # ASCII digits only: str.isdigit() also accepts '²'


def _int(value, field: str) -> int:
    if isinstance(value, bool):
        raise _Malformed(f"{field} must be a whole number")
    if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value):
        value = int(value)
    if not isinstance(value, int):
        raise _Malformed(f"{field} must be a whole number, got {_shown(value)}")
    if value not in _INT64:
        raise _Malformed(f"{field} {value} does not fit in 64 bits")
    return value


def _text(value, field: str, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise _Malformed(f"{field} is empty")
        return None
    if not isinstance(value, str):
        raise _Malformed(f"{field} must be text, got {_shown(value)}")
    if "\x00" in value:  # PostgreSQL's text cannot hold it: the load would refuse the whole day
        raise _Malformed(f"{field} holds a NUL character")
    if not value.isascii():
        try:  # JSON's "\ud800" escape decodes to a lone surrogate, which no UTF-8 text can hold
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Malformed(f"{field} holds an unpaired surrogate (an invalid \\u escape)") from None
    return value


# A decimal number in ASCII, or NaN / Infinity (bad records, not a malformed file). float() alone
# would also take '1_000', '٣٠' and fullwidth digits.
_NUMBER = re.compile(r"\s*[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf|infinity)\s*",
                     re.IGNORECASE)


class _Overflowed(float):
    """A JSON number literal beyond a double (1e400), kept as infinity with its text: only the
    fields the record uses refuse it; an extra field of the vendor's keeps being ignored."""

    text: str


def _json_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        number = _Overflowed(number)
        number.text = text
    return number


def _finite_literal(text: str) -> float:
    """A number written with digits, which must stay finite: 1e400 is not infinity."""
    number = float(text)
    if math.isinf(number):
        raise _Malformed(f"value {text.strip()} is too large for a number")
    return number


def _float(value) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _Malformed(f"value must be a number, got {_shown(value)}")
    if isinstance(value, _Overflowed):
        raise _Malformed(f"value {value.text} is too large for a number")
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # a JSON integer of hundreds of digits
            digits = str(value)
            raise _Malformed(f"value {digits[:20]}… ({len(digits)} digits) is too large for a number") from None
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        if any(c.isdigit() for c in value):
            return _finite_literal(value)
        return float(value)
    raise _Malformed(f"value must be a number, got {_shown(value)}")


def _timestamp(value, field: str, required: bool, default: dt.datetime | None = None) -> dt.datetime | None:
    if value is None or value == "":
        if required:
            raise _Malformed(f"{field} is empty")
        return default
    if not isinstance(value, str):
        raise _Malformed(f"{field} must be an ISO 8601 timestamp, got {_shown(value)}")
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _Malformed(f"{field} is not an ISO 8601 timestamp: {_shown(value)}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)  # vendor times without an offset are UTC
    try:
        return parsed.astimezone(dt.timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00, before the first representable UTC instant
        raise _Malformed(f"{field} {_shown(value)} is outside the representable years in UTC") from None


def _record(raw: dict, received: dt.datetime, vendor: str) -> dict:
    missing = [f for f in REQUIRED if f not in raw]
    if missing:
        raise _Malformed(f"missing field(s) {', '.join(missing)}")
    return {
        "reading_id": _int(raw["reading_id"], "reading_id"),
        "user_id": _int(raw["user_id"], "user_id"),
        "device_id": _text(raw["device_id"], "device_id", True),
        "metric_type": _text(raw["metric_type"], "metric_type", True),
        "value": _float(raw["value"]),
        "unit": _text(raw["unit"], "unit", False),
        "created_at": _timestamp(raw["created_at"], "created_at", True),
        "ingested_at": _timestamp(raw.get("ingested_at"), "ingested_at", False, received),
        "source": vendor,
    }


def _lines(name: str, text: str):
    if name.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        try:
            header = reader.fieldnames or []
            missing = [f for f in REQUIRED if f not in header]
            if missing:
                raise _Malformed(f"CSV header lacks column(s) {', '.join(missing)}")
            repeated = sorted({f for f in header if header.count(f) > 1})
            if repeated:  # the reader would keep the last of them without a word
                raise _Malformed(f"CSV header repeats column(s) {', '.join(repeated)}")
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise _Malformed(f"line {reader.line_num}: wrong number of fields")
                yield reader.line_num, row
        except csv.Error as exc:  # e.g. a bare carriage return, a field over the reader's 128 kB limit
            raise _Malformed(f"line {reader.line_num}: {exc}") from None
    else:
        # JSON Lines end at "\n" only: str.splitlines() would also break at U+2028, form feeds and the
        # like, which JSON allows inside strings
        for lineno, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line, parse_float=_json_float)
            except json.JSONDecodeError as exc:
                raise _Malformed(f"line {lineno}: invalid JSON ({exc.msg})") from None
            except RecursionError:
                raise _Malformed(f"line {lineno}: JSON nested too deeply") from None
            if not isinstance(row, dict):
                raise _Malformed(f"line {lineno}: expected a JSON object")
            yield lineno, row


def parse_file(vendor: str, name: str, data: bytes, received: dt.datetime) -> pa.Table:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _Malformed("not UTF-8 text") from None
    records = []
    for lineno, raw in _lines(name, text):
        try:
            records.append(_record(raw, received, vendor))
        except _Malformed as exc:
            if str(exc).startswith("line "):
                raise
            raise _Malformed(f"line {lineno}: {exc}") from None
    return pa.Table.from_pylist(records, schema=READINGS)


def read_inbox(inbox: Staging, day: dt.date) -> list[VendorFile]:
    """Every vendor file of the day, parsed and validated; InputError on the first malformed one.

    A record without ``ingested_at`` gets its file's modification time: when the vendor delivered
    it, and the same on every rerun (a rerun must reproduce the warehouse exactly).
    """
    files = []
    for vendor in inbox.list_dirs(""):
        for rel in inbox.list_files(f"{vendor}/{day.isoformat()}"):
            uri = inbox.uri(rel)
            if vendor == DATABASE_SOURCE:
                # its records would pass for the application database's, whose ids are not checked
                raise InputError(f"vendor folder {inbox.uri(vendor)} has the application database's source name "
                                 f"'{DATABASE_SOURCE}': rename the vendor's folder")
            if not rel.endswith(SUFFIXES):
                raise InputError(f"malformed vendor file {uri}: unsupported file type (use .csv or .jsonl)")
            try:
                table = parse_file(vendor, rel, inbox.read_bytes(rel), inbox.modified_at(rel))
            except _Malformed as exc:
                raise InputError(f"malformed vendor file {uri}: {exc}") from None
            files.append(VendorFile(vendor, uri, table))
    return files


