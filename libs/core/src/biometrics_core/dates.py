"""The data day: a UTC calendar date and its half-open time window."""

from __future__ import annotations

import datetime as dt

from .errors import ConfigError


def parse_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ConfigError(f"invalid --date {value!r}: expected YYYY-MM-DD") from None


def day_window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[D 00:00, D+1 00:00) in UTC."""
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.timezone.utc)
    return start, start + dt.timedelta(days=1)
