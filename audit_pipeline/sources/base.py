"""The source interface shared by PostgreSQL, the demo database and the HelloJohn API.

Which source the settings select is :mod:`audit_pipeline.sources.registry`'s business: this module knows
no concrete source, so every source can import it.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import pyarrow as pa

# EventFilter lives with the pattern language (audit_pipeline.event_filters); it is named here too
# because every source's interface takes one.
from audit_pipeline.event_filters import EventFilter

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


class AuditSource(abc.ABC):
    """Reads audit events; implementations stream, never load a range whole."""

    #: A short label for messages and metadata, never containing credentials.
    description: str = "audit source"
    #: How :meth:`count` counted (its last call, where that varies), for the completeness check's metadata.
    count_method: str = "one count query on the source"

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


__all__ = ["AuditSource", "EventFilter", "Position", "TimeRange"]
