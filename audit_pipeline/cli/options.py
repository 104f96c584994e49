"""Option values the sub-commands share, parsed once, with one wording for a mistake."""

from __future__ import annotations

import datetime as dt

from audit_pipeline.core.errors import ConfigError


def parse_day(value: str, option: str) -> dt.date:
    """``2024-01-15`` → a date; anything else is a configuration error naming the option (exit 2)."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} must be a day as YYYY-MM-DD, got {value!r}") from None


def parse_optional_day(value: str | None, option: str) -> dt.date | None:
    """:func:`parse_day` for an option that may be left out."""
    return None if value is None else parse_day(value, option)
