"""Strict ISO 8601 instants: an offset or ``Z`` is required and no digit is dropped.

``datetime.fromisoformat`` accepts naive times and silently truncates fractions beyond
microseconds; an audit range or an event time must do neither, so both are refused here
with a message that says what was expected.
"""

from __future__ import annotations

import datetime as dt
import re

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = dt.timedelta(microseconds=1)

_FRACTION = re.compile(r"([.,])(\d+)")


def parse_instant(text: str) -> dt.datetime:
    """``2024-01-15T00:00:00Z`` / ``...+05:30`` → an aware UTC datetime; ValueError otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected an ISO 8601 time with an offset, e.g. 2024-01-15T00:00:00Z")
    value = text.strip()
    if "T" not in value and " " not in value:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"{value!r} is a date, not a time; give an instant such as {value}T00:00:00Z")
        raise ValueError(f"{value!r} is not an ISO 8601 time; use e.g. 2024-01-15T00:00:00Z or 2024-01-15T09:30:00+01:00")
    match = _FRACTION.search(value)
    if match and len(match.group(2)) > 6:
        extra = match.group(2)[6:]
        if extra.strip("0"):
            raise ValueError(f"{value!r} has more than microsecond precision ({len(match.group(2))} fractional digits)")
        value = value[: match.start(2) + 6] + value[match.end(2) :]
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time; use e.g. 2024-01-15T00:00:00Z or 2024-01-15T09:30:00+01:00") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"{text!r} has no offset; add Z for UTC (e.g. {value}Z) or an offset such as +01:00")
    return parsed.astimezone(UTC)


def format_instant(value: dt.datetime) -> str:
    """UTC with ``Z``; fractional seconds only when present (``2024-01-15T00:00:00Z``)."""
    utc = value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


def epoch_micros(value: dt.datetime) -> int:
    """Microseconds since 1970-01-01 UTC of an aware datetime, exactly (integer arithmetic, no float on the way)."""
    return (value - EPOCH) // _MICROSECOND


def from_epoch_micros(value: int) -> dt.datetime:
    """The aware UTC datetime ``value`` microseconds after the epoch."""
    return EPOCH + value * _MICROSECOND
