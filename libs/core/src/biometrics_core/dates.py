"""The data day: a UTC calendar date and its half-open time window."""

from __future__ import annotations

import datetime as dt
import re

from .errors import ConfigError


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day(value: str) -> dt.date:
    # strictly YYYY-MM-DD: Python also reads 20260105 and 2026-W02-1, which the DAG never passes
    try:
        day = dt.date.fromisoformat(value) if _DAY.fullmatch(value or "") else None
    except ValueError:
        day = None
    if day is None:
        raise ConfigError(f"invalid --date {value!r}: expected YYYY-MM-DD")
    if day == dt.date.max:  # the day's window ends on the next day, which Python cannot represent
        raise ConfigError(f"invalid --date {value!r}: the last day supported is {dt.date.max - dt.timedelta(days=1)}")
    return day


def day_window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[D 00:00, D+1 00:00) in UTC."""
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.timezone.utc)
    return start, start + dt.timedelta(days=1)
