"""The forwarding engine: source events after a sink's position, up to a safe horizon, into the sink.

How it keeps every event exactly once (or, for sinks without an idempotency key, at least once):

* **Order and position.** Events are read in ``(created_at, id)`` order with keyset pagination
  (``after=position``), so events sharing a timestamp are neither skipped nor repeated.  The
  position moves only after every event of a batch is acknowledged by the sink or written to the
  dead-letter store (:mod:`.deadletters`), in a transaction fenced by the sink's lease
  (:mod:`.positions`).
* **Concurrent writers: the horizon.** A row becomes visible when its transaction commits, but its
  ``created_at`` is usually the transaction's *start*.  A pass therefore reads only events older
  than ``db now - settle_seconds`` and, where the role can see other sessions in
  ``pg_stat_activity``, older than the oldest open writing transaction's start less the same lag.
  An event below the horizon has committed already, so reading past it never leaves a gap.
* **Crash.** Killed mid-batch, a forwarder has not moved the position; the next one re-sends that
  batch.  Elasticsearch answers ``409`` for ids it already has (counted as delivered, not
  duplicated); other sinks may receive that one batch twice (at-least-once), which is why batches
  stay small.  A crashed forwarder's lease expires after ``lease_seconds``.
* **Retries and outages.** Events the sink reports as retryable are re-sent, alone, after an
  exponential backoff with full jitter (at least the sink's ``Retry-After``).  A batch that keeps
  failing for ``retry.give_up_seconds`` ends the pass with the position left before it, so the
  next pass (or run) resumes there: PostgreSQL is the buffer, nothing is dropped.
* **Bounded memory.** At most ``read_events`` rows are requested per query, streamed in source
  batches; one batch is being sent while the next one is prepared.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from audit_pipeline.errors import AuditPipelineError
from audit_pipeline.forwarding.config import ForwardingSettings, SinkForwarding
from audit_pipeline.forwarding.deadletters import DeadLetterStore
from audit_pipeline.forwarding.positions import LeaseLost, PositionStore, SinkState, events_by_day, new_holder
from audit_pipeline.schema import COLUMNS
from audit_pipeline.sinks.base import DeliveryReport, EventBatch, Outcome, Sink, SinkFailure
from audit_pipeline.sources.base import AuditSource, Position, TimeRange
from audit_pipeline.streaming import read_ahead

UTC = dt.UTC
#: The lower bound of ``start: earliest``: before any audit event.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = dt.timedelta(microseconds=1)


class ForwardingError(AuditPipelineError):
    """A pass could not finish; the message says why and what to do."""


class SinkBusy(ForwardingError):
    """Another forwarder holds the sink's lease."""


class DeliveryStalled(ForwardingError):
    """A batch kept failing for longer than ``retry.give_up_seconds``."""


# -- the horizon ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Horizon:
    """Events strictly older than ``value`` are safe to read: none can still commit below it."""

    value: dt.datetime
    now: dt.datetime
    #: Start of the oldest open writing transaction, when visible and watched.
    oldest_open_write: dt.datetime | None
    #: False when the role cannot see other sessions, so only the settle lag protects; None when the source cannot tell.
    sees_other_transactions: bool | None


def source_now(source: AuditSource) -> dt.datetime:
    """The database clock when the source has one (rows get ``created_at`` from it), else ours."""
    now = getattr(source, "now", None)
    value: dt.datetime = now() if callable(now) else dt.datetime.now(UTC)
    return value.astimezone(UTC)


def compute_horizon(source: AuditSource, settings: ForwardingSettings) -> Horizon:
    settle = dt.timedelta(seconds=settings.settle_seconds)
    now = source_now(source)
    value = now - settle
    oldest = None
    sees: bool | None = None
    if settings.watch_open_transactions:
        oldest = source.oldest_open_write_start()
        check = getattr(source, "can_see_other_transactions", None)
        sees = bool(check()) if callable(check) else None
        if oldest is not None:
            oldest = oldest.astimezone(UTC)
            value = min(value, oldest - settle)
    return Horizon(value, now, oldest, sees)


def initial_position(start: object, source: AuditSource) -> Position | None:
    """Where a sink without a position begins: None is before the first event."""
    if start == "earliest":
        return None
    if start == "now":
        return Position(source_now(source), "")
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
    later = source.count(TimeRange(position.created_at + _ONE_MICROSECOND, max(end, position.created_at + _ONE_MICROSECOND)))
    same = TimeRange(position.created_at, position.created_at + _ONE_MICROSECOND)
    if source.count(same) <= (1 if position.id else 0):
        return later  # no other event shares the position's timestamp
    tied = sum(b.num_rows for b in source.iter_batches(same, after=position))
    return later + tied


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


def measure_lag(source: AuditSource, state: SinkState | None, start: object) -> Lag:
    now = source_now(source)
    position = state.position if state else initial_position(start, source)
    if state is None and start == "now":
        return Lag(0, 0.0, None)
    events = events_after(source, position, now)
    if not events:
        return Lag(0, 0.0, None)
    oldest = first_pending(source, position, now)
    seconds = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    return Lag(events, seconds, oldest)


# -- results and progress ------------------------------------------------------------------------
@dataclass
class PassResult:
    sink: str
    horizon: dt.datetime
    position: Position | None
    delivered: int = 0
    dead_lettered: int = 0
    #: Events the sink does not want (``Sink.accepts``): passed over as handled.
    skipped: int = 0
    batches: int = 0
    dead_letter_keys: list[str] = field(default_factory=list)
    #: Why the pass stopped before the horizon; None when it got there.
    stopped: str | None = None
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.stopped is None

    def summary(self) -> str:
        text = f"{self.sink}: {self.delivered:,} delivered, {self.dead_lettered:,} dead-lettered"
        if self.skipped:
            text += f", {self.skipped:,} not wanted by the sink"
        text += f" in {self.seconds:.1f}s; position {_show(self.position)}"
        if self.stopped:
            text += f"; STOPPED before the horizon {self.horizon.isoformat()}: {self.stopped}"
        return text


def _show(position: Position | None) -> str:
    return "(start)" if position is None else f"{position.created_at.isoformat()} {position.id}"


@dataclass
class ReplayResult:
    sink: str
    objects: int = 0
    delivered: int = 0
    still_rejected: int = 0
    stopped: str | None = None

    def summary(self) -> str:
        text = f"{self.sink}: replayed {self.objects} dead-letter object(s): {self.delivered:,} delivered, {self.still_rejected:,} rejected again"
        if self.stopped:
            text += f"; STOPPED: {self.stopped}"
        return text


# -- the forwarder -------------------------------------------------------------------------------
class Forwarder:
    """Moves one sink forward; used by the ``forward`` command and the Dagster runs alike."""

    def __init__(
        self,
        sink: Sink,
        source: AuditSource,
        positions: PositionStore,
        dead_letters: DeadLetterStore,
        settings: ForwardingSettings,
        options: SinkForwarding | None = None,
        *,
        log: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        progress_interval: float = 1.0,
    ) -> None:
        self.sink = sink
        self.source = source
        self.positions = positions
        self.dead_letters = dead_letters
        self.settings = settings
        self.options = options or SinkForwarding()
        self.log = log or (lambda _message: None)
        self._sleep = sleep
        self._clock = clock
        self.progress_interval = progress_interval
        self.holder = new_holder()
        self._prepared = False
        self._leased = False
        self._heartbeat: _Heartbeat | None = None
        #: Set to end the current pass at the next batch boundary (SIGTERM while following).
        self.interrupt = threading.Event()
        self._rng = random.Random()
        self._max_events = max(1, min(settings.batch_events, sink.max_batch_events))
        self._max_bytes = max(1, sink.max_batch_bytes)
        rate = self.options.max_events_per_second or settings.max_events_per_second
        self.max_rate: float | None = rate

    # -- lease ---------------------------------------------------------------------------------
    def acquire(self, wait_seconds: float | None = None) -> None:
        """Take the sink's lease, waiting up to ``wait_seconds`` (default: one lease, so a crashed holder's lease can expire)."""
        wait = self.settings.lease_seconds + 1 if wait_seconds is None else wait_seconds
        deadline = self._clock() + wait
        told = False
        while True:
            other = self.positions.acquire(self.sink.name, self.holder, self.settings.lease_seconds)
            if other is None:
                self._leased = True
                self._heartbeat = _Heartbeat(self.positions, self.sink.name, self.holder, self.settings.lease_seconds)
                return
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise SinkBusy(
                    f"sink {self.sink.name} is being forwarded by {other.holder} (lease for {other.expires_in:.0f}s more); "
                    "only one forwarder per sink may run at a time"
                )
            if not told:
                self.log(f"{self.sink.name}: waiting for the lease held by {other.holder} ({other.expires_in:.0f}s left)")
                told = True
            self._sleep(min(remaining, max(0.2, min(other.expires_in, 1.0))))

    def release(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self._leased:
            self._leased = False
            with contextlib.suppress(Exception):
                self.positions.release(self.sink.name, self.holder)

    @contextlib.contextmanager
    def leased(self, wait_seconds: float | None = None) -> Iterator[Forwarder]:
        self.acquire(wait_seconds)
        try:
            yield self
        finally:
            self.release()

    def _renew(self) -> None:
        """Fail fast if the heartbeat found the lease gone (the position commit checks it again)."""
        if self._heartbeat is not None and self._heartbeat.lost is not None:
            raise self._heartbeat.lost

    def _pause(self, seconds: float) -> None:
        """Sleep (the heartbeat keeps the lease alive), checking the lease in between."""
        end = self._clock() + seconds
        while True:
            remaining = end - self._clock()
            if remaining <= 0:
                return
            self._sleep(min(remaining, 1.0))
            self._renew()

    # -- one pass --------------------------------------------------------------------------------
    def state(self) -> SinkState:
        state = self.positions.get(self.sink.name)
        if state is None:
            state = self.positions.initialise(self.sink.name, initial_position(self.options.start, self.source))
            self.log(f"{self.sink.name}: new sink, starting at {_show(state.position)} (start: {self.options.start})")
        return state

    def run_pass(self, horizon: dt.datetime | None = None) -> PassResult:
        """Forward everything after the position and before the horizon (computed now unless given).

        Delivery problems end the pass early with ``stopped`` set, never with a half-moved position.
        """
        if not self._leased:
            raise RuntimeError("run_pass needs the sink's lease: use `with forwarder.leased():`")
        started = self._clock()
        if horizon is None:
            info = compute_horizon(self.source, self.settings)
            horizon = info.value
            if self.settings.watch_open_transactions and info.sees_other_transactions is False and not getattr(self, "_warned_visibility", False):
                self._warned_visibility = True
                self.log(
                    f"{self.sink.name}: this database role cannot see other sessions' transactions (grant pg_read_all_stats); "
                    f"only the {self.settings.settle_seconds:g}s settle lag guards against late commits"
                )
        state = self.state()
        result = PassResult(self.sink.name, horizon, state.position)
        try:
            self._prepare()
            self._forward(result, horizon)
        except (SinkFailure, AuditPipelineError) as exc:
            result.stopped = str(exc)
        result.seconds = self._clock() - started
        return result

    def _prepare(self) -> None:
        if self._prepared:
            return
        self._with_retries("preparing the sink", self.sink.prepare)
        self._prepared = True

    def _forward(self, result: PassResult, horizon: dt.datetime) -> None:
        position = result.position
        backlog = None
        last_report = self._clock()
        pass_start = self._clock()
        sent_for_rate = 0
        while True:
            start = position.created_at if position else EARLIEST
            if start >= horizon:
                return
            if backlog is None:
                backlog = events_after(self.source, position, horizon)
                if not backlog:
                    return
                self.log(f"{self.sink.name}: {backlog:,} events to forward, up to {horizon.isoformat()}")
            read = 0
            batches = self.source.iter_batches(TimeRange(start, horizon), after=position, limit=self.settings.read_events)
            for events in _prefetch(batches, self._max_events):
                read += len(events)
                for part in _split(events, self._max_events, self._max_bytes):
                    if self.interrupt.is_set():
                        return  # asked to stop: the position is at a batch boundary
                    self._deliver(part, result)
                    position = result.position
                    sent_for_rate += len(part)
                    if self.max_rate:
                        ahead = sent_for_rate / self.max_rate - (self._clock() - pass_start)
                        if ahead > 0:
                            self._pause(ahead)
                    if self._clock() - last_report >= self.progress_interval:
                        last_report = self._clock()
                        self._report(result, backlog, pass_start)
            if read < self.settings.read_events:
                if backlog:
                    self._report(result, backlog, pass_start)
                return

    def _report(self, result: PassResult, backlog: int | None, pass_start: float) -> None:
        done = result.delivered + result.dead_lettered + result.skipped
        elapsed = max(1e-6, self._clock() - pass_start)
        rate = done / elapsed
        text = f"{self.sink.name}: {done:,}"
        if backlog:
            text += f"/{backlog:,} ({100 * done / backlog:.0f}%)"
            if rate > 0 and done < backlog:
                text += f", ~{(backlog - done) / rate:.0f}s left"
        text += f", {rate:,.0f} events/s, at {_show(result.position)}"
        if result.dead_lettered:
            text += f", {result.dead_lettered:,} dead-lettered"
        self.log(text)

    # -- one batch -------------------------------------------------------------------------------
    def _deliver(self, batch: EventBatch, result: PassResult) -> None:
        n = len(batch)
        pending = list(range(n)) if type(self.sink).accepts is Sink.accepts else [i for i, t in enumerate(batch.types) if self.sink.accepts(t)]
        skipped = n - len(pending)
        delivered, rejected = self._settle(batch, pending)
        if rejected:
            indices = sorted(rejected)
            key = self.dead_letters.write(self.sink.name, batch.take(indices), [rejected[i] for i in indices])
            result.dead_letter_keys.append(key)
            self.log(f"{self.sink.name}: {len(indices)} event(s) rejected, kept in {self.dead_letters.store.uri(key)}: {rejected[indices[0]]}")
        last = _last_position(batch)
        self.positions.advance(
            self.sink.name,
            self.holder,
            last,
            delivered=delivered + skipped,
            dead_lettered=len(rejected),
            lease_seconds=self.settings.lease_seconds,
            per_day=events_by_day(batch.batch, rejected),
        )
        result.position = last
        result.delivered += delivered
        result.skipped += skipped
        result.dead_lettered += len(rejected)
        result.batches += 1

    def _settle(self, batch: EventBatch, pending: list[int]) -> tuple[int, dict[int, str]]:
        """Send until every pending event is delivered or rejected; returns (delivered, rejected reasons).

        Raises :class:`DeliveryStalled` when some keep failing for ``retry.give_up_seconds``.
        """
        n = len(batch)
        delivered = 0
        rejected: dict[int, str] = {}
        failing_since: float | None = None
        attempt = 0
        while pending:
            self._renew()
            part = batch if len(pending) == n else batch.take(pending)
            report = self._send(part)
            retry: list[int] = []
            reason = ""
            for j, outcome in enumerate(report.outcomes):
                i = pending[j]
                if outcome is Outcome.DELIVERED:
                    delivered += 1
                elif outcome is Outcome.REJECTED:
                    rejected[i] = report.reasons.get(j) or "rejected by the sink (no reason given)"
                else:
                    retry.append(i)
                    reason = report.reasons.get(j) or reason
            pending = retry
            if pending:
                now = self._clock()
                failing_since = now if failing_since is None else failing_since
                delay = self._backoff(attempt, report.retry_after)
                if now - failing_since + delay > self.settings.retry.give_up_seconds:
                    raise DeliveryStalled(
                        f"{len(pending)} event(s) still not accepted by {self.sink.name} after {now - failing_since:.0f}s "
                        f"(retry.give_up_seconds={self.settings.retry.give_up_seconds:g}); last answer: {reason or 'retry'}; "
                        "the position stays before them and the next pass resumes there"
                    )
                self.log(f"{self.sink.name}: {len(pending)} event(s) to retry in {delay:.1f}s ({reason or 'retry'})")
                self._pause(delay)
                attempt += 1
        return delivered, rejected

    # -- dead letters ------------------------------------------------------------------------------
    def replay_dead_letters(self) -> ReplayResult:
        """Send the sink's dead letters again; delivered ones leave the store, the rest stay with the new reason.

        A crash between a send and the rewrite of its object leaves the object in place, so the
        next replay sends those events again (Elasticsearch: 409, delivered once; other sinks: at least once).
        """
        if not self._leased:
            raise RuntimeError("replay needs the sink's lease: use `with forwarder.leased():`")
        result = ReplayResult(self.sink.name)
        started = self._clock()
        try:
            self._prepare()
            for obj in self.dead_letters.iter_objects(self.sink.name):
                delivered, rejected = self._settle(obj.events, list(range(len(obj.events))))
                self.dead_letters.rewrite(self.sink.name, obj, sorted(rejected), rejected)
                self.positions.replayed(self.sink.name, delivered, events_by_day(obj.events.batch, rejected))
                result.delivered += delivered
                result.still_rejected += len(rejected)
                result.objects += 1
                if rejected:
                    first = sorted(rejected)[0]
                    self.log(f"{self.sink.name}: {len(rejected)} event(s) of {obj.key} rejected again: {rejected[first]}")
                if self._clock() - started >= self.progress_interval:
                    self.log(f"{self.sink.name}: replayed {result.objects} object(s), {result.delivered:,} delivered")
        except (SinkFailure, AuditPipelineError) as exc:
            result.stopped = str(exc)
        return result

    def _send(self, part: EventBatch) -> DeliveryReport:
        try:
            report = self.sink.send(part)
        except (SinkFailure, LeaseLost):
            raise
        except Exception as exc:  # a sink should report, not raise; treat the unexpected as transient
            return DeliveryReport.all(len(part), Outcome.RETRY, f"{type(exc).__name__}: {_first_line(exc)}")
        if len(report.outcomes) != len(part):
            raise ForwardingError(f"sink {self.sink.name} answered {len(report.outcomes)} outcomes for {len(part)} events (a bug in the sink)")
        return report

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        retry = self.settings.retry
        ceiling = min(retry.max_seconds, retry.initial_seconds * (2**attempt))
        delay = self._rng.uniform(retry.initial_seconds / 2, ceiling)
        return max(delay, retry_after or 0.0)

    def _with_retries(self, what: str, action: Callable[[], None]) -> None:
        failing_since = None
        attempt = 0
        while True:
            try:
                action()
                return
            except (SinkFailure, AuditPipelineError):
                raise
            except Exception as exc:
                now = self._clock()
                failing_since = now if failing_since is None else failing_since
                delay = self._backoff(attempt, None)
                reason = f"{type(exc).__name__}: {_first_line(exc)}"
                if now - failing_since + delay > self.settings.retry.give_up_seconds:
                    raise DeliveryStalled(
                        f"{self.sink.name}: {what} kept failing for {now - failing_since:.0f}s "
                        f"(retry.give_up_seconds={self.settings.retry.give_up_seconds:g}): {reason}; nothing was sent, the next pass resumes at the same position"
                    ) from None
                self.log(f"{self.sink.name}: {what} failed ({reason}); retrying in {delay:.1f}s")
                self._pause(delay)
                attempt += 1

    # -- following -------------------------------------------------------------------------------
    def follow(self, stop: threading.Event | None = None, passes: int | None = None) -> Iterator[PassResult]:
        """Run passes every ``poll_seconds`` (the caller holds the lease), yielding each result."""
        stop = stop or threading.Event()
        self.interrupt = stop
        done = 0
        while not stop.is_set():
            try:
                result = self.run_pass()
            except LeaseLost:
                raise
            yield result
            done += 1
            if passes is not None and done >= passes:
                return
            end = self._clock() + self.settings.poll_seconds
            while not stop.is_set() and self._clock() < end:
                stop.wait(min(1.0, max(0.0, end - self._clock())))
                self._renew()

    def close(self) -> None:
        self.release()
        with contextlib.suppress(Exception):
            self.sink.close()


class _Heartbeat:
    """Renews the lease every third of its length while a forwarder holds it.

    A slow request or a long retry wait does not lose the lease; a dead process (crash, SIGKILL)
    stops renewing, so its lease expires and another forwarder takes over.
    """

    def __init__(self, positions: PositionStore, sink: str, holder: str, lease_seconds: float) -> None:
        self.lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(positions, sink, holder, lease_seconds), name=f"lease-{sink}", daemon=True)
        self._thread.start()

    def _run(self, positions: PositionStore, sink: str, holder: str, lease_seconds: float) -> None:
        while not self._stop.wait(lease_seconds / 3):
            try:
                positions.renew(sink, holder, lease_seconds)
            except LeaseLost as exc:
                self.lost = exc
                return
            except Exception:  # noqa: S112 - the state database blinked: try again next beat; the commit is fenced anyway
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# -- helpers -------------------------------------------------------------------------------------
def _last_position(events: EventBatch) -> Position:
    """The batch's last ``(created_at, id)``, without converting the whole columns to Python."""
    arrow = events.batch
    return Position(arrow.column(COLUMNS.index("created_at"))[-1].as_py(), arrow.column(COLUMNS.index("id"))[-1].as_py())


def _split(events: EventBatch, max_events: int, max_bytes: int) -> Iterator[EventBatch]:
    """Consecutive parts of at most ``max_events`` events and ``max_bytes`` NDJSON bytes (at least one event)."""
    n = len(events)
    if n <= max_events:
        _, offsets = events.ndjson()
        if int(offsets[-1]) <= max_bytes:
            yield events
            return
    _, offsets = events.ndjson()
    start = 0
    while start < n:
        by_bytes = int(np.searchsorted(offsets, offsets[start] + max_bytes, side="right")) - 1
        stop = min(n, start + max_events, max(start + 1, by_bytes))
        yield events.slice(start, stop)
        start = stop


def _encoded_chunks(batches: Iterator[object], chunk_rows: int) -> Iterator[EventBatch]:
    """Cut source batches into chunks of ``chunk_rows`` events, NDJSON-encoded as they are cut."""
    for batch in batches:
        rows = batch.num_rows  # type: ignore[attr-defined]
        for start in range(0, rows, chunk_rows):
            events = EventBatch(batch.slice(start, chunk_rows))  # type: ignore[attr-defined]
            events.ndjson()
            yield events


def _prefetch(batches: Iterator[object], chunk_rows: int, depth: int = 3) -> Iterator[EventBatch]:
    """Read the source and encode the next chunks in a thread while the current one is being sent.

    At most ``depth`` chunks wait, besides the source batch being cut up, so memory stays
    bounded whatever the backlog.
    """
    return read_ahead(_encoded_chunks(batches, chunk_rows), depth, name="forwarding-reader")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
