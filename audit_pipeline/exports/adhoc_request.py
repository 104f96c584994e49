"""One reading of an ad-hoc export's request (range, globs, format), shared by ``audit-pipeline export`` and the
Dagster ``adhoc_export`` job, so the same words select the same events wherever they are typed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.core.event_filters import EventFilter, check_pattern
from audit_pipeline.core.isotime import format_instant, parse_instant
from audit_pipeline.exports.adhoc import canonical_format
from audit_pipeline.sources.base import TimeRange


@dataclass(frozen=True)
class RangeRequest:
    """What to export: ``[start, end)``, the filter (``None`` when empty) and the canonical format name."""

    time_range: TimeRange
    event_filter: EventFilter | None
    fmt: str


def _instant(value: str, option: str) -> dt.datetime:
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def _patterns(values: Sequence[str], option: str) -> tuple[str, ...]:
    checked = []
    for value in values:
        try:
            checked.append(check_pattern(value))
        except ValueError as exc:
            raise ConfigError(f"{option}: {exc}") from None
    return tuple(checked)


def parse_range_request(
    start: str,
    end: str,
    *,
    fmt: str = "csv",
    types: Sequence[str] = (),
    tenants: Sequence[str] = (),
    organizations: Sequence[str] = (),
    names: dict[str, str] | None = None,
) -> RangeRequest:
    """Check every part, raising :class:`ConfigError` naming the option (``names`` maps ``from``/``to``/``type``/
    ``tenant``/``organization``/``format`` to how the caller spells them: ``--from`` on the command line)."""
    spelled = {"from": "--from", "to": "--to", "type": "--type", "tenant": "--tenant", "organization": "--organization", "format": "--format"}
    spelled |= names or {}
    try:
        canonical = canonical_format(fmt)
    except ConfigError:
        raise ConfigError(f"{spelled['format']} {fmt!r} is not one of csv, ndjson, json, parquet") from None
    first = _instant(start, spelled["from"])
    last = _instant(end, spelled["to"])
    if last <= first:
        raise ConfigError(
            f"{spelled['to']} {format_instant(last)} must be after {spelled['from']} {format_instant(first)} (the range is [{spelled['from']}, {spelled['to']}))"
        )
    for value in organizations:
        if not value:
            raise ConfigError(f"{spelled['organization']} cannot be empty")
    event_filter = EventFilter(
        include_types=_patterns(types, spelled["type"]), include_tenants=_patterns(tenants, spelled["tenant"]), organizations=tuple(organizations)
    )
    return RangeRequest(TimeRange(first, last), None if event_filter.is_empty else event_filter, canonical)
