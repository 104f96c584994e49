"""Event filters from the configuration and the command line, with one pattern language.

Patterns are globs with ``*`` (any run of characters, dots included) and ``?`` (one
character), matched case-sensitively against the whole value, as HelloJohn's own
``type=user.*`` filter reads.  Character classes (``[...]``) are refused everywhere: the
PostgreSQL source translates patterns to ``LIKE``, which has none, and a pattern must
select the same events whichever source reads it.  A NULL tenant matches as ``""``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audit_pipeline.sources.base import EventFilter

if TYPE_CHECKING:
    from audit_pipeline.settings import ExportSettings

FILTER_FIELDS = ("include_types", "exclude_types", "include_tenants", "exclude_tenants")


def check_pattern(pattern: str) -> str:
    """Return the pattern, or raise ValueError saying why it cannot be used."""
    if not isinstance(pattern, str) or pattern == "":
        raise ValueError("a pattern cannot be empty; use * to match everything")
    if "[" in pattern:
        raise ValueError(f"pattern {pattern!r}: character classes ([...]) are not supported, use * and ?")
    if "\x00" in pattern:
        raise ValueError(f"pattern {pattern!r} contains a NUL character")
    return pattern


def daily_export_filter(export: ExportSettings) -> EventFilter | None:
    """The ``export.filter`` section as an :class:`EventFilter`, or None when it selects everything."""
    section = export.filter
    event_filter = EventFilter(
        include_types=tuple(section.include_types),
        exclude_types=tuple(section.exclude_types),
        include_tenants=tuple(section.include_tenants),
        exclude_tenants=tuple(section.exclude_tenants),
    )
    return None if event_filter.is_empty else event_filter


def describe(event_filter: EventFilter | None) -> dict[str, Any]:
    """The non-empty patterns, for asset metadata and messages (``{}`` means unfiltered)."""
    if event_filter is None:
        return {}
    described: dict[str, Any] = {name: list(getattr(event_filter, name)) for name in FILTER_FIELDS if getattr(event_filter, name)}
    if event_filter.organizations:
        described["organizations"] = list(event_filter.organizations)
    return described
