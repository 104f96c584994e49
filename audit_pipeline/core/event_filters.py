"""Event filters from the configuration and the command line, with one pattern language.

Patterns are globs with ``*`` (any run of characters, dots included) and ``?`` (one
character), matched case-sensitively against the whole value, as HelloJohn's own
``type=user.*`` filter reads.  Character classes (``[...]``) are refused everywhere: the
PostgreSQL source translates patterns to ``LIKE``, which has none, and a pattern must
select the same events whichever source reads it.  A NULL tenant matches as ``""``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

FILTER_FIELDS = ("include_types", "exclude_types", "include_tenants", "exclude_tenants")


@dataclass(frozen=True)
class EventFilter:
    """Include/exclude glob patterns on event type and tenant, applied at the source."""

    include_types: tuple[str, ...] = ()
    exclude_types: tuple[str, ...] = ()
    include_tenants: tuple[str, ...] = ()
    exclude_tenants: tuple[str, ...] = ()
    organizations: tuple[str, ...] = field(default=())

    @property
    def is_empty(self) -> bool:
        return not (self.include_types or self.exclude_types or self.include_tenants or self.exclude_tenants or self.organizations)

    def matches(self, event_type: str, tenant_id: str | None, organization_id: str | None = None) -> bool:
        if self.include_types and not any(fnmatch.fnmatchcase(event_type, p) for p in self.include_types):
            return False
        if any(fnmatch.fnmatchcase(event_type, p) for p in self.exclude_types):
            return False
        tenant = tenant_id or ""
        if self.include_tenants and not any(fnmatch.fnmatchcase(tenant, p) for p in self.include_tenants):
            return False
        if any(fnmatch.fnmatchcase(tenant, p) for p in self.exclude_tenants):
            return False
        return not (self.organizations and (organization_id or "") not in self.organizations)


class FilterPatterns(Protocol):
    """The ``export.filter`` section as the settings hold it (read here without importing the settings,
    which validate their patterns with :func:`check_pattern`)."""

    @property
    def include_types(self) -> Sequence[str]: ...
    @property
    def exclude_types(self) -> Sequence[str]: ...
    @property
    def include_tenants(self) -> Sequence[str]: ...
    @property
    def exclude_tenants(self) -> Sequence[str]: ...


class HasFilter(Protocol):
    """The ``export`` section: anything with a ``filter``."""

    @property
    def filter(self) -> FilterPatterns: ...


def check_pattern(pattern: str) -> str:
    """Return the pattern, or raise ValueError saying why it cannot be used."""
    if not isinstance(pattern, str) or pattern == "":
        raise ValueError("a pattern cannot be empty; use * to match everything")
    if "[" in pattern:
        raise ValueError(f"pattern {pattern!r}: character classes ([...]) are not supported, use * and ?")
    if "\x00" in pattern:
        raise ValueError(f"pattern {pattern!r} contains a NUL character")
    return pattern


def daily_export_filter(export: HasFilter) -> EventFilter | None:
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
