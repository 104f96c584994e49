"""``forward --all``: one process following every enabled sink, each at its own position.

Each sink gets its own forwarder on its own thread (its own lease, position, retries, connections),
so a slow or failing sink only falls behind itself: the others keep their passes and their latency,
and a sink that recovers catches up from its own position, exactly as a follower of that sink alone
would (the engine's guarantees are per sink, unchanged).  What the sinks share is the probe between
passes (:class:`SharedProbe`): idle followers probe on a common grid and one query answers all of
those at the same position, so an idle database sees about one probe per ``poll_seconds`` whatever
the number of sinks.  The rows are read once per sink that is behind (a caught-up sink reads only
what is new).

A thread whose forwarder fails (the lease taken by another process, the state database gone) logs
one line and starts again after ``poll_seconds``; only SIGTERM / Ctrl-C (``stop``) ends them all,
each finishing and committing its batches in flight.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from audit_pipeline.core.errors import AuditPipelineError
from audit_pipeline.forwarding.engine import Forwarder
from audit_pipeline.forwarding.errors import SinkBusy
from audit_pipeline.forwarding.results import PassResult
from audit_pipeline.sources.base import AuditSource, Position

#: An answer younger than this is given again to another sink asking about the same position.
FRESH_SECONDS = 0.05
#: How long a sink's thread waits for a lease another process holds before it says so and stays alive
#: (shorter than a liveness check's 30 s, so a held sink never makes the file stale).
LEASE_WAIT_SECONDS = 10.0


class SharedProbe:
    """``next_after`` for several followers: one query per position and instant, on one connection.

    Followers of sinks that are caught up sit at the same position (the last event); their idle
    probes fall on the same grid (:class:`.wakeup.Wakeup` ``align``), so the first asks the database
    and the others, a few milliseconds later, take its answer.
    """

    def __init__(self, source: AuditSource, *, fresh: float = FRESH_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.fresh = fresh
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: dict[Position | None, tuple[float, dt.datetime | None]] = {}
        #: Queries sent to the database (the rest were answered from a fresh answer).
        self.queries = 0

    def __call__(self, position: Position | None) -> dt.datetime | None:
        with self._lock:
            now = self._clock()
            known = self._answers.get(position)
            if known is not None and now - known[0] <= self.fresh:
                return known[1]
            found = self.source.next_after(position)
            self.queries += 1
            # Only the latest answers are kept: one per position some sink is at.
            self._answers = {p: a for p, a in self._answers.items() if now - a[0] <= self.fresh}
            self._answers[position] = (self._clock(), found)
            return found


@dataclass
class SinkFollower:
    """One sink's thread in ``forward --all``."""

    forwarder: Forwarder
    thread: threading.Thread | None = None
    #: The last pass, and how many ended with the sink failing (for the exit code and tests).
    last: PassResult | None = None
    stopped_passes: int = 0
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.forwarder.sink.name


class Fleet:
    """Follows every given forwarder on its own thread until ``stop`` is set."""

    def __init__(
        self,
        forwarders: list[Forwarder],
        probe: SharedProbe,
        *,
        on_result: Callable[[PassResult], None] | None = None,
        log: Callable[[str], None] | None = None,
        wait_for_lease: float | None = None,
        restart_seconds: float | None = None,
    ) -> None:
        self.followers = [SinkFollower(f) for f in forwarders]
        self.probe = probe
        self.on_result = on_result or (lambda _result: None)
        self.log = log or (lambda _message: None)
        self.wait_for_lease = wait_for_lease
        self.restart_seconds = restart_seconds
        self.stop = threading.Event()
        for forwarder in forwarders:
            forwarder.probe = probe
            forwarder.align_probes = True

    def start(self) -> None:
        for follower in self.followers:
            follower.thread = threading.Thread(target=self._run, args=(follower,), name=f"follow-{follower.name}", daemon=True)
            follower.thread.start()

    def join(self, timeout: float | None = None) -> None:
        for follower in self.followers:
            if follower.thread is not None:
                follower.thread.join(timeout)

    def __iter__(self) -> Iterator[SinkFollower]:
        return iter(self.followers)

    def _run(self, follower: SinkFollower) -> None:
        forwarder = follower.forwarder
        pause = self.restart_seconds if self.restart_seconds is not None else forwarder.settings.poll_seconds
        while not self.stop.is_set():
            try:
                forwarder.acquire(LEASE_WAIT_SECONDS if self.wait_for_lease is None else self.wait_for_lease)
                try:
                    for result in forwarder.follow(self.stop):
                        follower.last = result
                        follower.dead_lettered += result.dead_lettered
                        if result.stopped:
                            follower.stopped_passes += 1
                        self.on_result(result)
                finally:
                    forwarder.release()
            except SinkBusy as exc:
                # Another process forwards this sink (a per-sink follower, a Dagster run): not a fault of this
                # one, which stays alive and asks again (a crashed holder's lease expires meanwhile).
                forwarder.alive()
                follower.errors.append(str(exc))
                self.log(f"{follower.name}: {exc}; asking again in {pause:g}s (the other sinks go on)")
            except (AuditPipelineError, OSError) as exc:
                follower.errors.append(str(exc))
                self.log(f"{follower.name}: {exc}; following it again in {pause:g}s (the other sinks go on)")
            except Exception as exc:  # a bug in one sink must not stop the others
                follower.errors.append(f"{type(exc).__name__}: {exc}")
                self.log(f"{follower.name}: unexpected {type(exc).__name__}: {exc}; following it again in {pause:g}s (the other sinks go on)")
            with contextlib.suppress(Exception):
                forwarder.release()
            self.stop.wait(pause)
