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

# EventFilter lives with the pattern language (audit_pipeline.core.event_filters); it is named here too
# because every source's interface takes one.
from audit_pipeline.core.event_filters import EventFilter

UTC = dt.UTC
#: Before every audit event: where a read "from the start" begins.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=UTC)


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

    # Optional capabilities: every source has them, with these defaults; a source that can do better overrides them
    # (PostgreSQL: a database clock, transaction visibility, one-query counts and probes; the HelloJohn API: a
    # count through its other endpoint).  Callers never probe with getattr.

    def now(self) -> dt.datetime | None:
        """The source's own clock (rows get ``created_at`` from it), or None when it has none: callers then use theirs."""
        return None

    def oldest_open_write_start(self) -> dt.datetime | None:
        """Start of the oldest still-open transaction that has written, when the source can tell."""
        return None

    def can_see_other_transactions(self) -> bool | None:
        """Whether :meth:`oldest_open_write_start` sees other sessions' transactions; None when the source cannot tell."""
        return None

    def oldest_prepared_start(self) -> dt.datetime | None:
        """When the oldest prepared (two-phase) transaction was prepared, when the source has and shows them."""
        return None

    def can_see_prepared_transactions(self) -> bool | None:
        """Whether :meth:`oldest_prepared_start` sees every prepared transaction; None when the source cannot tell."""
        return None

    def independent_count(self, time_range: TimeRange, event_filter: EventFilter | None = None) -> int:
        """A count made apart from the read that exports the range (the ``complete`` check compares the two).

        Default :meth:`count`: a database's count query is separate from its read already.
        """
        return self.count(time_range, event_filter)

    def count_through(self, start: dt.datetime, position: Position) -> int | None:
        """Events with ``start <= created_at`` at or before ``position`` in one cheap query, or None when the source
        has no such query (the caller then counts the range and reads the events tied at ``position``)."""
        return None

    def next_after(self, position: Position | None) -> dt.datetime | None:
        """``created_at`` of the first event after ``position``, however young, or None when none is there.

        Default: a one-row read of :meth:`iter_batches` up to a day past the source's clock (or ours).
        """
        return first_pending(self, position, (self.now() or dt.datetime.now(UTC)).astimezone(UTC) + dt.timedelta(days=1))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> AuditSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def first_pending(source: AuditSource, position: Position | None, end: dt.datetime) -> dt.datetime | None:
    """``created_at`` of the first event after ``position`` before ``end``, if any (one row read)."""
    start = position.created_at if position else EARLIEST
    if start >= end:
        return None
    for batch in source.iter_batches(TimeRange(start, end), after=position, limit=1):
        if batch.num_rows:
            value: dt.datetime = batch.column("created_at")[0].as_py()
            return value
    return None


__all__ = ["EARLIEST", "AuditSource", "Position", "TimeRange", "first_pending"]
