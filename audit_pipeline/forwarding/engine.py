"""The forwarder: source events after a sink's position, up to a safe horizon, into the sink.

How it keeps every event exactly once (or, for sinks without an idempotency key, at least once):

* **Order and position.** Events are read in ``(created_at, id)`` order with keyset pagination
  (``after=position``) in large windows streamed as Arrow batches, so events sharing a timestamp
  are neither skipped nor repeated.  The position moves only past the longest contiguous run of
  batches whose every event was acknowledged by the sink or written to the dead letters
  (:mod:`.window`, :mod:`.deadletters`), in a transaction fenced by the sink's lease (:mod:`.positions`).
* **Concurrent writers.** Only events below the horizon (:mod:`.horizon`) are read; events
  committed behind the position anyway are found by the late-commit sweep (:mod:`.sweep`).
* **Crash.** Killed mid-pass, a forwarder has not moved the position past the batches in flight;
  the next one re-sends them.  Elasticsearch answers ``409`` for ids it already has; other sinks
  may receive those batches twice (at-least-once).
* **Retries and outages** follow the retry policy (:mod:`.retry`); a batch that keeps failing
  ends the pass with the position before it and the last real failure as the reason.
* **Bounded memory.** One source query streams batches; a bounded number of encoded chunks wait
  (:mod:`.batching`) and at most ``concurrency`` batches are in flight.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator

from audit_pipeline.config.sections.forwarding import ForwardingSettings, SinkForwarding
from audit_pipeline.core.errors import AuditPipelineError
from audit_pipeline.forwarding.batching import BatchLimits, BatchTransform, last_position, prefetch, split
from audit_pipeline.forwarding.deadletters import DeadLetterStore
from audit_pipeline.forwarding.delivered_counts import events_by_day
from audit_pipeline.forwarding.delivery import Courier, Settled
from audit_pipeline.forwarding.horizon import Clock, Horizon, compute_horizon, events_after, initial_position
from audit_pipeline.forwarding.leases import Lease
from audit_pipeline.forwarding.positions import PositionStore, SinkState
from audit_pipeline.forwarding.replay import replay_dead_letters
from audit_pipeline.forwarding.results import PassResult, ReplayResult, show_position
from audit_pipeline.forwarding.retry import RetryPolicy
from audit_pipeline.forwarding.sweep import Sweep
from audit_pipeline.forwarding.wakeup import Probe, Wakeup
from audit_pipeline.forwarding.window import InFlight
from audit_pipeline.sinks.base import EventBatch, Sink, SinkFailure
from audit_pipeline.sources.base import EARLIEST, AuditSource, Position, TimeRange

__all__ = ["Forwarder"]


def _ignore_lag(_seconds: float) -> None:
    """No one watches the lag (not following, or no metrics): nothing to measure while retrying."""


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
        now: Clock | None = None,
        transform: BatchTransform | None = None,
        progress_interval: float = 1.0,
    ) -> None:
        self.sink = sink
        self.source = source
        self.positions = positions
        self.dead_letters = dead_letters
        self.settings = settings
        self.options = options or SinkForwarding()
        self.log = log or (lambda _message: None)
        self._clock = clock
        #: The database clock the horizon is computed from (injectable: tests move time instead of sleeping).
        self.now = now
        #: The one hook where a source batch is changed before this sink sees it (e.g. privacy transforms).
        self.transform = transform
        self.progress_interval = progress_interval
        self.lease = Lease(positions, sink.name, settings.lease_seconds, clock=clock, sleep=sleep, log=self.log)
        self.retry = RetryPolicy(settings.retry, clock=clock, sleep=self.lease.pause, log=self.log)
        self.courier = Courier(sink, self.retry, self.lease.check)
        #: The most events and bytes per request to this sink.
        self.limits = BatchLimits(max(1, min(settings.batch_events, sink.max_batch_events)), max(1, sink.max_batch_bytes))
        self.sweep = Sweep(
            sink=sink.name,
            source=source,
            state=positions.engine,
            late_window=settings.late_window,
            courier=self.courier,
            commit_late=lambda events, settled, result: self._commit(events, settled, result, late=True),
            limits=self.limits,
            transform=lambda: self.transform,
            log=self.log,
        )
        self._prepared = False
        self._warned: set[str] = set()
        #: Set to end the current pass at the next batch boundary (SIGTERM while following).
        self.interrupt = threading.Event()
        self.max_rate: float | None = self.options.max_events_per_second or settings.max_events_per_second
        self.concurrency = self.options.concurrency or sink.default_concurrency
        #: The database clock minus ours, in seconds, as of the last horizon (the follower's probe estimates with it).
        self.db_clock_offset = 0.0
        #: Passes with at most this many events pending say nothing while running (a follower's passes are small and many).
        self.quiet_up_to = 0
        #: Count the events pending before reading (for the progress lines).  A follower counts in its first pass
        #: only: its later passes are small, the read itself says when nothing is pending, and the count (one to
        #: three queries) was 6% of a 5,000 events/s follower's pass when profiled, more on a loaded database.
        self.count_backlog = True
        #: Called whenever a follower makes progress (a pass ended, a probe answered): the liveness file.
        self.alive: Callable[[], None] = lambda: None
        #: What the source's role may see (pg_stat_activity, pg_prepared_xacts), asked once per forwarder.
        self._privileges: dict[str, object] = {}
        #: Following: told the age in seconds of the oldest event not yet delivered, at every probe and, at most
        #: once a second, while a send is being retried (metrics).
        self.on_lag: Callable[[float], None] = _ignore_lag
        self._lag_measured = float("-inf")
        #: The position as of the last commit (what the lag is measured from while a send is retried).
        self._position: Position | None = None
        #: Following: told of every retry of a send (metrics); a retrying follower is alive too.
        self.on_retry: Callable[[], None] = lambda: None
        self.retry.on_retry = self._retried
        #: Following: the probe between passes, when not the source's own (``forward --all`` shares one).
        self.probe: Probe | None = None
        #: Following: idle probes on a grid shared with other followers in this process (see :class:`.wakeup.Wakeup`).
        self.align_probes = False

    @property
    def holder(self) -> str:
        return self.lease.holder

    # -- lease ---------------------------------------------------------------------------------
    def acquire(self, wait_seconds: float | None = None) -> None:
        """Take the sink's lease, waiting up to ``wait_seconds`` (default: one lease, so a crashed holder's lease can expire)."""
        self.lease.acquire(wait_seconds)

    def release(self) -> None:
        self.lease.release()

    @contextlib.contextmanager
    def leased(self, wait_seconds: float | None = None) -> Iterator[Forwarder]:
        self.acquire(wait_seconds)
        try:
            yield self
        finally:
            self.release()

    # -- one pass --------------------------------------------------------------------------------
    def state(self) -> SinkState:
        state = self.positions.get(self.sink.name)
        if state is None:
            state = self.positions.initialise(self.sink.name, initial_position(self.options.start, self.source, self.now))
            where = "the earliest event" if state.position is None else f"the position {show_position(state.position)}"
            self.log(f"{self.sink.name}: new sink, starting at {where} (start: {self.options.start})")
        return state

    def horizon(self) -> Horizon:
        info = compute_horizon(self.source, self.settings, self.now, self._privileges)
        self.db_clock_offset = info.now.timestamp() - time.time()
        if self.settings.watch_open_transactions:
            if info.sees_other_transactions is False:
                self._warn_once(
                    "activity",
                    f"{self.sink.name}: this database role cannot see other sessions' transactions (grant pg_read_all_stats); "
                    f"only the {self.settings.settle_seconds:g}s settle lag guards against late commits",
                )
            if info.sees_prepared_transactions is False:
                self._warn_once(
                    "prepared",
                    f"{self.sink.name}: this database role cannot read pg_prepared_xacts; prepared transactions are guarded only by the "
                    f"{self.settings.settle_seconds:g}s settle lag and the late-commit sweep (forwarding.late_window)",
                )
        return info

    def run_pass(self, horizon: dt.datetime | None = None, *, sweep: bool = True) -> PassResult:
        """Forward everything after the position and before the horizon (computed now unless given).

        Delivery problems end the pass early with ``stopped`` set, never with a half-moved position.
        ``sweep`` False skips the late-commit sweep (a follower runs it every ``sweep_seconds``, not every pass).
        """
        if not self.lease.held:
            raise RuntimeError("run_pass needs the sink's lease: use `with forwarder.leased():`")
        started = self._clock()
        if horizon is None:
            horizon = self.horizon().value
        state = self.state()
        self._position = state.position
        result = PassResult(self.sink.name, horizon, state.position)
        try:
            self.prepare_sink()
            if sweep:
                self.sweep.run(result)
            self._forward(result, horizon)
        except (SinkFailure, AuditPipelineError) as exc:
            result.stopped = str(exc)
        result.seconds = self._clock() - started
        return result

    def _forward(self, result: PassResult, horizon: dt.datetime) -> None:
        position = result.position
        backlog: int | None = None
        counted = not self.count_backlog
        pass_start = last_report = self._clock()
        submitted = 0
        window: InFlight[Settled] = InFlight(self.courier.settle, self.concurrency, self.sink.name)
        try:
            while not self.interrupt.is_set():
                start = position.created_at if position else EARLIEST
                if start >= horizon:
                    break
                if not counted:
                    counted = True
                    backlog = events_after(self.source, position, horizon)
                    if not backlog:
                        break
                    if backlog > self.quiet_up_to:
                        self.log(f"{self.sink.name}: {backlog:,} events to forward, up to {horizon.isoformat()}")
                read = 0
                batches = self.source.iter_batches(TimeRange(start, horizon), after=position, limit=self.settings.read_events)
                with contextlib.closing(prefetch(batches, self.limits.max_events, self.transform)) as chunks:
                    for events in chunks:
                        read += len(events)
                        for part in split(events, self.limits.max_events, self.limits.max_bytes):
                            if self.interrupt.is_set():
                                break  # asked to stop: what is in flight is finished and committed below
                            for done, settled in window.submit(part):
                                self._commit(done, settled, result)
                            position = last_position(part)
                            submitted += len(part)
                            self._keep_rate(submitted, pass_start)
                            if self._clock() - last_report >= self.progress_interval:
                                last_report = self._clock()
                                self._report(result, backlog, pass_start)
                        if self.interrupt.is_set():
                            break
                if read < self.settings.read_events:
                    break
            for done, settled in window.drain():
                self._commit(done, settled, result)
            if (backlog or result.delivered + result.dead_lettered + result.skipped) > self.quiet_up_to:
                self._report(result, backlog, pass_start)
        finally:
            window.close()

    def _keep_rate(self, submitted: int, pass_start: float) -> None:
        if self.max_rate:
            ahead = submitted / self.max_rate - (self._clock() - pass_start)
            if ahead > 0:
                self.lease.pause(ahead)

    def _commit(self, events: EventBatch, settled: Settled, result: PassResult, *, late: bool = False) -> None:
        """Dead letters first, then the position (with the sweep's ledger) in one fenced transaction."""
        self._keep_dead_letters(events, settled, result)
        last = last_position(events)
        self.positions.advance(
            self.sink.name,
            self.holder,
            None if late else last,
            delivered=settled.delivered + settled.skipped,
            dead_lettered=len(settled.rejected),
            lease_seconds=self.settings.lease_seconds,
            per_day=events_by_day(events.batch, settled.rejected),
            ledger=self.sweep.ledger_entry(events),
            ledger_window=self.sweep.window,
        )
        if not late:
            result.position = self._position = last
        result.delivered += settled.delivered
        result.skipped += settled.skipped
        result.dead_lettered += len(settled.rejected)
        result.truncated += len(settled.truncated)
        result.batches += 1

    def _keep_dead_letters(self, events: EventBatch, settled: Settled, result: PassResult) -> None:
        for reasons, delivered in ((settled.rejected, False), (settled.truncated, True)):
            if not reasons:
                continue
            indices = sorted(reasons)
            key = self.dead_letters.write(self.sink.name, events.take(indices), [reasons[i] for i in indices], delivered=delivered)
            result.dead_letter_keys.append(key)
            what = "delivered cut down to fit" if delivered else "rejected"
            self.log(f"{self.sink.name}: {len(indices)} event(s) {what}, kept whole in {self.dead_letters.store.uri(key)}: {reasons[indices[0]]}")

    def _report(self, result: PassResult, backlog: int | None, pass_start: float) -> None:
        done = result.delivered + result.dead_lettered + result.skipped
        elapsed = max(1e-6, self._clock() - pass_start)
        rate = done / elapsed
        text = f"{self.sink.name}: {done:,}"
        if backlog:
            text += f"/{backlog:,} ({100 * done / backlog:.0f}%)"
            if rate > 0 and done < backlog:
                text += f", ~{(backlog - done) / rate:.0f}s left"
        text += f", {rate:,.0f} events/s, at {show_position(result.position)}"
        if result.dead_lettered:
            text += f", {result.dead_lettered:,} dead-lettered"
        self.log(text)

    def _retried(self) -> None:
        self.on_retry()
        self.alive()
        if self.on_lag is not _ignore_lag and self._clock() - self._lag_measured >= 1.0:
            with contextlib.suppress(Exception):  # only a measurement: the send's retry goes on regardless
                self.measure_lag(self._position)

    def pending_after(self, position: Position | None) -> dt.datetime | None:
        """``created_at`` of the first event after ``position``, however young: the follower's probe
        (:attr:`probe` when shared, else the source's one-row ``next_after``)."""
        if self.probe is not None:
            return self.probe(position)
        return self.source.next_after(position)

    def measure_lag(self, position: Position | None) -> dt.datetime | None:
        """Probe, and tell :attr:`on_lag` how old the first event after ``position`` is (0 when none waits)."""
        pending = self.pending_after(position)
        self._lag_measured = self._clock()
        self.on_lag(0.0 if pending is None else max(0.0, time.time() + self.db_clock_offset - pending.timestamp()))
        return pending

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log(message)

    # -- dead letters ------------------------------------------------------------------------------
    def replay_dead_letters(self) -> ReplayResult:
        """Send the sink's dead letters again (see :func:`.replay.replay_dead_letters`)."""
        if not self.lease.held:
            raise RuntimeError("replay needs the sink's lease: use `with forwarder.leased():`")
        try:
            self.prepare_sink()
        except (SinkFailure, AuditPipelineError) as exc:
            return ReplayResult(self.sink.name, stopped=str(exc))
        return replay_dead_letters(
            self.sink.name, self.courier, self.dead_letters, self.positions, log=self.log, clock=self._clock, progress_interval=self.progress_interval
        )

    def prepare_sink(self) -> None:
        """The sink's one-time setup, once per forwarder."""
        if not self._prepared:
            self.courier.prepare()
            self._prepared = True

    # -- following -------------------------------------------------------------------------------
    def follow(self, stop: threading.Event | None = None, passes: int | None = None) -> Iterator[PassResult]:
        """Run passes as events become ready (the caller holds the lease), yielding each result.

        Between passes a one-row probe on the kept connection looks for an event after the position,
        from :data:`.wakeup.SHORTEST` seconds after a pass that moved, backing off to ``poll_seconds`` while idle (:mod:`.wakeup`);
        the late-commit sweep runs with a pass at least every ``sweep_seconds``.  A pass that stopped
        (the sink kept failing) is tried again after ``poll_seconds``.
        """
        stop = stop or threading.Event()
        self.interrupt = stop
        self.quiet_up_to = max(self.quiet_up_to, self.limits.max_events)
        wakeup = Wakeup(
            settings=self.settings,
            measure=self.measure_lag,
            alive=lambda: self.alive(),
            check_lease=self.lease.check,
            db_clock_offset=lambda: self.db_clock_offset,
            clock=self._clock,
            align=self.align_probes,
        )
        done = 0
        last_sweep: float | None = None
        while not stop.is_set():
            sweep = last_sweep is None or self._clock() - last_sweep >= self.settings.sweep_seconds
            if sweep:
                last_sweep = self._clock()
            result = self.run_pass(sweep=sweep)
            self.count_backlog = False  # the first pass said how many were pending; later ones are small
            self.alive()
            yield result
            done += 1
            if passes is not None and done >= passes:
                return
            assert last_sweep is not None
            if result.stopped:
                with contextlib.suppress(AuditPipelineError):
                    wakeup.probe(result.position)  # the lag keeps growing while the sink fails
                wakeup.pause(stop, self.settings.poll_seconds)
                continue
            wakeup.wait(stop, result, last_sweep + self.settings.sweep_seconds)

    def close(self) -> None:
        self.release()
        with contextlib.suppress(Exception):
            self.sink.close()
