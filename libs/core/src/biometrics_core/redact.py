"""Keep secrets out of messages: passwords in URLs and known secret values."""

from __future__ import annotations

import os
import re

from .settings import SETTINGS

# the password runs to the last '@' of the URL: one typed with an unencoded '@' is masked whole
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>\S*)@")
# libpq also takes the password as a query parameter: postgresql:///db?host=h&password=...
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&](?:ssl)?password=)(?P<pw>[^&\s]*)", re.IGNORECASE)
# PostgreSQL quotes a row's or a key's values in an error's DETAIL ("Failing row contains (...)", "Key
# (...)=(...) already exists", in the server's language): readings are health data, and messages and
# logs leave the warehouse. Every DETAIL field goes, to the end of its line (leave_out_details also
# takes the driver's own copy of the detail out of a message or a logged traceback, whatever its lines).
_ROW_DETAIL = re.compile(r"DETAIL:  [^\n]*")
ROW_VALUES_LEFT_OUT = "(left out: it may quote a row's values)"  # what stands for a detail
# the settings marked secret, and libpq's own password variable, which the backup's tools may be given
_SECRET_ENV_VARS = (*(s.name for s in SETTINGS if s.secret), "PGPASSWORD")


def _secret_values() -> list[str]:
    values = []
    for name in _SECRET_ENV_VARS:
        raw = os.environ.get(name)
        if not raw:
            continue
        if "://" not in raw:
            values.append(raw)
            continue
        values += [m.group("pw") for m in _URL_PASSWORD.finditer(raw)]
        values += [m.group("pw") for m in _QUERY_PASSWORD.finditer(raw)]
    return [v for v in values if len(v) >= 3]


def server_details(exc: BaseException | None) -> tuple[str, ...]:
    """The DETAIL texts the server sent with an exception or with any exception it chains (the
    driver's ``diag.message_detail``, SQLAlchemy's ``orig``): as the server wrote them, in any
    language and over any number of lines, which the DETAIL pattern cuts at the first."""
    details, seen, pending = [], set(), [exc]
    while pending:
        error = pending.pop()
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        detail = getattr(getattr(error, "diag", None), "message_detail", None)
        if detail:
            details.append(detail)
        pending += [getattr(error, "orig", None), error.__cause__, error.__context__]
    return tuple(details)


def leave_out_details(text: str, exc: BaseException | None) -> str:
    """text with each server detail of exc (see server_details) replaced, whatever its lines."""
    for detail in server_details(exc):
        text = text.replace(detail, ROW_VALUES_LEFT_OUT)
    return text


def redact(text: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """Return text with URL passwords and the values of secret variables masked, and the row values
    of PostgreSQL's error details left out."""
    text = _ROW_DETAIL.sub(f"DETAIL:  {ROW_VALUES_LEFT_OUT}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", text)
    text = _QUERY_PASSWORD.sub(lambda m: f"{m.group('key')}***", text)
    for secret in [*_secret_values(), *extra_secrets]:
        if secret:
            text = text.replace(secret, "***")
    return text


def one_line(text: str, limit: int = 400) -> str:
    """Collapse a (possibly multi-line driver) message into one short line."""
    line = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 3] + "..."
