"""When a follower runs its next pass: as soon as an event is ready, cheaply when nothing happens.

A pass costs several queries (the position, the horizon's clock and transaction views, counts,
the read); running one every few seconds made real-time forwarding wait for the poll
(``poll_seconds`` 5 plus ``settle_seconds`` 10 gave a p99 of about 15 s).  Between passes the
follower instead *probes*: one query on the kept connection for the first event after the
position (``min(created_at)`` after it, served by the ``created_at`` index; sources without such a
query read one row), at once after a pass that moved and took at least :data:`SHORTEST` seconds,
:data:`SHORTEST` seconds after a shorter one that moved, doubling while nothing comes, up to
``poll_seconds``.  When the probe finds an event it sleeps until the event is older than the
settle lag (by the database clock, estimated from the last horizon) and wakes the pass; an
idle database sees about one probe per ``poll_seconds``.  Late commits behind the position are
not probed for: the sweep runs with a pass at least every ``sweep_seconds``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

from audit_pipeline.config.sections.forwarding import ForwardingSettings
from audit_pipeline.forwarding.results import PassResult
from audit_pipeline.sources.base import Position

#: Seconds between a pass that moved and the next probe: bounds the passes per second when busy
#: (0.1 before: at 5,000 events/s the gap was a tenth of an event's latency).
SHORTEST = 0.05

#: ``next_after``: the ``created_at`` of the first event after a position (None: nothing yet).
Probe = Callable[[Position | None], dt.datetime | None]


class Wakeup:
    """Decides, after each pass of a follower, when the next one runs.

    The probe is the forwarder's (:meth:`.engine.Forwarder.pending_after`: ``forward --all`` shares one
    between its sinks, see :class:`.fleet.SharedProbe`); ``align`` makes idle waits end on multiples of the interval, so the
    followers of several sinks probe at the same instants and one answer serves them all.
    """

    def __init__(
        self,
        *,
        settings: ForwardingSettings,
        measure: Probe,
        alive: Callable[[], None],
        check_lease: Callable[[], None],
        db_clock_offset: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        align: bool = False,
    ) -> None:
        """``measure``: the forwarder's probe that also records the lag; ``db_clock_offset``: the database clock
        minus ours, as of the last horizon; ``clock``: the forwarder's (sweep deadlines are on it)."""
        self.settings = settings
        self.measure = measure
        self.alive = alive
        self.check_lease = check_lease
        self.db_clock_offset = db_clock_offset
        self.interval = SHORTEST
        self._clock = clock
        self._wall = wall
        self._align = align
        self.probes = 0

    def wait(self, stop: threading.Event, result: PassResult, sweep_due: float) -> None:
        """Return when the next pass should run: an event is ready, the sweep is due (``sweep_due``, on
        the forwarder's clock) or ``stop`` is set.  A pass reads up to its horizon however many windows that
        takes, so after a long catch-up the probe finds events already ready and the next pass follows at once."""
        poll = self.settings.poll_seconds
        moved = result.delivered + result.skipped + result.dead_lettered + result.late_events > 0
        self.interval = SHORTEST if moved else min(self.interval * 2, poll)
        # A pass that moved and lasted at least SHORTEST already spaced the passes: events committed while it ran
        # are due (or nearly), so the probe asks at once (at 5,000 events/s the gap was a third of a pass cycle).
        first = moved and result.seconds >= SHORTEST
        while not stop.is_set():
            gap = 0.0 if first else self.interval
            first = False
            if self._align and gap > SHORTEST:
                gap -= self._clock() % gap  # on the shared grid: the other sinks' followers probe now too
            self.pause(stop, min(gap, max(0.0, sweep_due - self._clock())))
            if stop.is_set() or self._clock() >= sweep_due:
                return
            pending = self.probe(result.position)
            self.alive()
            if pending is not None:
                ready_in = (pending.timestamp() + self.settings.settle_seconds) - (self._wall() + self.db_clock_offset())
                self.pause(stop, min(max(0.0, ready_in), poll))
                return
            self.interval = min(self.interval * 2, poll)

    def probe(self, position: Position | None) -> dt.datetime | None:
        """``created_at`` of the first event after the position, however young (one indexed row); the
        forwarder records how old it is (its lag)."""
        self.probes += 1
        return self.measure(position)

    def pause(self, stop: threading.Event, seconds: float) -> None:
        """Wait, keeping the lease renewed (the heartbeat does; ``check_lease`` raises if it was lost)."""
        end = self._clock() + seconds
        while not stop.is_set():
            left = end - self._clock()
            if left <= 0:
                break
            stop.wait(min(1.0, left))
            self.check_lease()
