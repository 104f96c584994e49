"""The horizon (how far a pass may read without passing a commit still to come) and the lag.

A row becomes visible when its transaction commits, but its ``created_at`` is usually the
transaction's *start*.  A pass therefore reads only events older than ``db now - settle_seconds``
and, where the role can see them, older than the oldest open writing transaction's start
(``pg_stat_activity``) and the oldest prepared transaction (``pg_prepared_xacts``: a
``PREPARE TRANSACTION`` leaves ``pg_stat_activity`` but may still ``COMMIT PREPARED`` rows
stamped earlier), each less the same lag.  What still slips past (a writer stamping rows itself
long before inserting them) is caught by the late-commit sweep (:mod:`.sweep`).

The clock is injectable (``now``), so tests move time instead of sleeping through the settle lag.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from audit_pipeline.config.sections.forwarding import ForwardingSettings
from audit_pipeline.forwarding.positions import SinkState
from audit_pipeline.sources.base import EARLIEST, AuditSource, Position, TimeRange, first_pending

UTC = dt.UTC
ONE_MICROSECOND = dt.timedelta(microseconds=1)
#: A database clock: returns the time the source stamps rows with.
Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class Horizon:
    """Events strictly older than ``value`` are safe to read: none can still commit below it."""

    value: dt.datetime
    now: dt.datetime
    #: Start of the oldest open writing transaction, when visible and watched.
    oldest_open_write: dt.datetime | None
    #: False when the role cannot see other sessions, so only the settle lag protects; None when the source cannot tell.
    sees_other_transactions: bool | None
    #: When the oldest transaction prepared in this database (``PREPARE TRANSACTION``) was prepared.
    oldest_prepared: dt.datetime | None = None
    #: False when the role cannot read ``pg_prepared_xacts``; None when the source cannot tell.
    sees_prepared_transactions: bool | None = None


def source_now(source: AuditSource) -> dt.datetime:
    """The database clock when the source has one (rows get ``created_at`` from it), else ours."""
    return (source.now() or dt.datetime.now(UTC)).astimezone(UTC)


def _ask(question: Callable[[], object], known: dict[str, object] | None = None) -> object:
    method = question.__name__
    if known is not None and method in known:
        return known[method]
    answer = question()
    if known is not None:
        known[method] = answer
    return answer


def compute_horizon(source: AuditSource, settings: ForwardingSettings, now: Clock | None = None, known: dict[str, object] | None = None) -> Horizon:
    """``known``: answers about the role's privileges kept between passes (a follower asks once, not every pass)."""
    settle = dt.timedelta(seconds=settings.settle_seconds)
    current = (now or (lambda: source_now(source)))().astimezone(UTC)
    value = current - settle
    oldest = prepared = None
    sees: bool | None = None
    sees_prepared: bool | None = None
    if settings.watch_open_transactions:
        oldest = source.oldest_open_write_start()
        seen = _ask(source.can_see_other_transactions, known)
        sees = None if seen is None else bool(seen)
        found = _ask(source.oldest_prepared_start)
        prepared = found if isinstance(found, dt.datetime) else None
        seen = _ask(source.can_see_prepared_transactions, known)
        sees_prepared = None if seen is None else bool(seen)
        for start in (oldest, prepared):
            if start is not None:
                value = min(value, start.astimezone(UTC) - settle)
    return Horizon(
        value,
        current,
        oldest.astimezone(UTC) if oldest else None,
        sees,
        prepared.astimezone(UTC) if prepared else None,
        sees_prepared,
    )


def initial_position(start: object, source: AuditSource, now: Clock | None = None) -> Position | None:
    """Where a sink without a position begins: None is before the first event."""
    if start == "earliest":
        return None
    if start == "now":
        return Position((now or (lambda: source_now(source)))().astimezone(UTC), "")
    if isinstance(start, dt.date):
        return Position(dt.datetime(start.year, start.month, start.day, tzinfo=UTC), "")
    raise ValueError(f"unknown start {start!r}")


# -- lag -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lag:
    """How far a sink is behind the source: events after its position, and the oldest one's age."""

    events: int
    seconds: float
    oldest_pending: dt.datetime | None


def events_after(source: AuditSource, position: Position | None, end: dt.datetime) -> int:
    """Exactly how many events lie after ``position`` and before ``end`` (counts; rows only for ties)."""
    if position is None:
        return source.count(TimeRange(EARLIEST, max(end, EARLIEST)))
    if position.created_at >= end:
        return 0
    later = source.count(TimeRange(position.created_at + ONE_MICROSECOND, max(end, position.created_at + ONE_MICROSECOND)))
    same = TimeRange(position.created_at, position.created_at + ONE_MICROSECOND)
    if source.count(same) <= (1 if position.id else 0):
        return later  # no other event shares the position's timestamp
    tied = sum(b.num_rows for b in source.iter_batches(same, after=position))
    return later + tied


def measure_lag(source: AuditSource, state: SinkState | None, start: object, now: Clock | None = None) -> Lag:
    current = (now or (lambda: source_now(source)))().astimezone(UTC)
    position = state.position if state else initial_position(start, source, lambda: current)
    if state is None and start == "now":
        return Lag(0, 0.0, None)
    events = events_after(source, position, current)
    if not events:
        return Lag(0, 0.0, None)
    oldest = first_pending(source, position, current)
    seconds = max(0.0, (current - oldest).total_seconds()) if oldest else 0.0
    return Lag(events, seconds, oldest)
