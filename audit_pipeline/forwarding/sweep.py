"""The late-commit sweep: events committed behind a sink's position after a pass went by.

An application that stamps ``created_at`` itself and inserts the row later (a queue draining a
backlog, a retrying client), or a prepared transaction committed later, can make a row appear
below the position after the horizon had passed it.  Each pass therefore looks at the trailing
``forwarding.late_window`` behind the position (0 turns this off):

1. it counts the events the source holds there now and the events the ledger (:mod:`.ledger`)
   says the sink was handed there; equal counts end the sweep (the usual case: two cheap queries);
2. otherwise it reads the window and delivers the events the ledger does not know, oldest first,
   counting them as ``late_events``; their ids join the ledger in the same transaction, so a
   later pass never sends them again.

Elasticsearch would also answer ``409`` to a re-sent id; the ledger keeps other sinks from
receiving an event twice, and spares every sink the re-sending.  A late event older than the
window is not found: size the window to the latest a writer may stamp.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from audit_pipeline.core.isotime import epoch_micros, from_epoch_micros
from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.forwarding import ledger
from audit_pipeline.forwarding.batching import BatchLimits, BatchTransform, split
from audit_pipeline.forwarding.delivery import Courier, Settled
from audit_pipeline.forwarding.horizon import ONE_MICROSECOND
from audit_pipeline.forwarding.ledger import LedgerEntry
from audit_pipeline.forwarding.results import PassResult
from audit_pipeline.sinks.base import EventBatch
from audit_pipeline.sources.base import AuditSource, Position, TimeRange

_ID = COLUMNS.index("id")
_CREATED = COLUMNS.index("created_at")

#: Commits a batch of late events: dead letters, then the ledger and the counts with the position unchanged.
CommitLate = Callable[[EventBatch, Settled, PassResult], None]


class Sweep:
    """One sink's sweep.  It is handed what it needs, no forwarder: the source and the state database it
    compares, the courier that delivers, ``commit_late`` (the forwarder's fenced commit), the batch limits,
    and ``transform``, asked each time (the hook a source batch passes before this sink sees it)."""

    def __init__(
        self,
        *,
        sink: str,
        source: AuditSource,
        state: sa.Engine,
        late_window: float,
        courier: Courier,
        commit_late: CommitLate,
        limits: BatchLimits,
        transform: Callable[[], BatchTransform | None] = lambda: None,
        log: Callable[[str], None] = lambda _message: None,
    ) -> None:
        self.sink = sink
        self.source = source
        self.state = state
        self.courier = courier
        self.commit_late = commit_late
        self.limits = limits
        self.transform = transform
        self.log = log
        self.window: dt.timedelta | None = dt.timedelta(seconds=late_window) if late_window > 0 else None

    def ledger_entry(self, events: EventBatch) -> LedgerEntry | None:
        return LedgerEntry.of(events) if self.window is not None and len(events) else None

    def run(self, result: PassResult) -> None:
        """Deliver what was committed behind the position since the sink was handed that stretch."""
        position = result.position
        if self.window is None or position is None:
            return
        found = check(self.source, self.state, self.sink, position, self.window)
        if found is None:
            return
        lower, _ = found
        known = ledger.entries(self.state, self.sink, epoch_micros(lower))
        ids = pa.array([i for e in known for i in e.id_list()], pa.string())
        for late in self._missing(lower, position, ids):
            for part in split(EventBatch(late), self.limits.max_events, self.limits.max_bytes):
                settled = self.courier.settle(part)
                self.commit_late(part, settled, result)
                result.late_events += len(part)
        if result.late_events:
            self.log(f"{self.sink}: {result.late_events:,} event(s) were committed after the position had passed them (late); delivered now")

    def _missing(self, lower: dt.datetime, position: Position, known: pa.Array) -> list[pa.RecordBatch]:
        """The window's events not in the ledger, in order (only these are kept in memory)."""
        found: list[pa.RecordBatch] = []
        time_range = TimeRange(lower, position.created_at + ONE_MICROSECOND)
        for batch in self.source.iter_batches(time_range):
            if known.type != batch.column(_ID).type:
                known = known.cast(batch.column(_ID).type)
            behind = _at_or_before(batch, position)
            new = pc.and_(behind, pc.invert(pc.is_in(batch.column(_ID), value_set=known)))
            if pc.any(new).as_py():
                found.append(batch.filter(new))
        transform = self.transform()
        if found and transform is not None:
            found = [transform(b) for b in found]
        return found


def check(source: AuditSource, state: sa.Engine, sink: str, position: Position, window: dt.timedelta) -> tuple[dt.datetime, list[LedgerEntry]] | None:
    """Whether events were committed behind ``position`` that the ledger does not know (two cheap counts).

    Returns where the ledger's coverage of the window starts and its entries (counts only, no ids)
    when the counts differ, else None.  Also asked by the Dagster sensor, so a late event gets a run
    even when nothing new arrives after it.
    """
    since = position.created_at - window
    begins = ledger.coverage(state, sink)
    if begins is None:
        # Not recorded (a sink forwarded before the ledger kept its start): covered from its first entry on.
        known = ledger.entries(state, sink, epoch_micros(since), detail=False)
        if not known:
            return None
        covered = from_epoch_micros(known[0].first_us) + ONE_MICROSECOND
        lower = max(since, covered) if known[0].first_us >= epoch_micros(since) else since
    else:
        # Covered from where the sink started (its first pass on): a row stamped before the first event it received counts too.
        lower = since if begins.from_us is None else max(since, from_epoch_micros(begins.from_us))
        if lower > position.created_at:
            return None
    floor = epoch_micros(lower)
    known = ledger.entries(state, sink, floor, detail=False, micros_before_us=floor)
    handed = sum(e.events if e.first_us >= floor else int((e.created_us() >= floor).sum()) for e in known)
    if _count_through(source, lower, position) == handed:
        return None
    return lower, known


def _at_or_before(batch: pa.RecordBatch, position: Position) -> pa.Array:
    created = batch.column(_CREATED)
    at = pa.scalar(position.created_at, created.type)
    earlier = pc.less(created, at)
    tie = pc.and_(pc.equal(created, at), pc.less_equal(batch.column(_ID), pa.scalar(position.id, batch.column(_ID).type)))
    return pc.or_(earlier, tie)


def _count_through(source: AuditSource, lower: dt.datetime, position: Position) -> int:
    """Events with ``lower <= created_at`` at or before ``position`` in the source now."""
    counted = source.count_through(lower, position)
    if counted is not None:
        return counted
    total = source.count(TimeRange(lower, position.created_at))
    tied = TimeRange(position.created_at, position.created_at + ONE_MICROSECOND)
    return total + sum(int(pc.sum(_at_or_before(b, position).cast(pa.int64())).as_py() or 0) for b in source.iter_batches(tied))
