"""The source interface shared by PostgreSQL, the demo database and the HelloJohn API."""

from __future__ import annotations

import abc
import datetime as dt
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import pyarrow as pa

if TYPE_CHECKING:
    from audit_pipeline.settings import Settings

UTC = dt.UTC


class Position(NamedTuple):
    """A point in the ``(created_at, id)`` order: everything at or before it has been handled."""

    created_at: dt.datetime
    id: str


@dataclass(frozen=True)
class TimeRange:
    """A half-open interval ``[start, end)`` of ``created_at``, both ends timezone-aware."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value.tzinfo is None:
                raise ValueError(f"TimeRange.{name} must be timezone-aware, got {value!r}")
        if self.end < self.start:
            raise ValueError(f"time range ends ({self.end.isoformat()}) before it starts ({self.start.isoformat()})")

    @classmethod
    def for_day(cls, day: dt.date) -> TimeRange:
        start = dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
        return cls(start, start + dt.timedelta(days=1))


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


class AuditSource(abc.ABC):
    """Reads audit events; implementations stream, never load a range whole."""

    #: A short label for messages and metadata, never containing credentials.
    description: str = "audit source"

    @abc.abstractmethod
    def check(self) -> None:
        """Fail early, with a message naming the setting, if the source cannot be read."""

    @abc.abstractmethod
    def iter_batches(
        self,
        time_range: TimeRange,
        *,
        after: Position | None = None,
        limit: int | None = None,
        event_filter: EventFilter | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Events with ``created_at`` in ``time_range`` and strictly after ``after``, in order."""

    @abc.abstractmethod
    def count(self, time_range: TimeRange, event_filter: EventFilter | None = None) -> int:
        """How many events ``iter_batches`` would yield for the range (no ``after``/``limit``)."""

    def oldest_open_write_start(self) -> dt.datetime | None:
        """Start of the oldest still-open transaction that has written, when the source can tell."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> AuditSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(settings: Settings) -> AuditSource:
    """Build the source the settings describe."""
    source = settings.source
    if source.type == "hellojohn_api":
        from audit_pipeline.sources.hellojohn_api import HelloJohnApiSource

        return HelloJohnApiSource.from_settings(settings)
    if settings.uses_demo_source:
        from audit_pipeline.sources.demo import DemoSource

        return DemoSource.default(batch_rows=source.batch_rows)
    from audit_pipeline.sources.postgres import PostgresSource

    assert source.database_url is not None
    return PostgresSource(source.database_url.get_secret_value(), table=source.table, batch_rows=source.batch_rows)
