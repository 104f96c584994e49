"""When a follower runs its next pass: as soon as an event is ready, cheaply when nothing happens.

A pass costs several queries (the position, the horizon's clock and transaction views, counts,
the read); running one every few seconds made real-time forwarding wait for the poll
(``poll_seconds`` 5 plus ``settle_seconds`` 10 gave a p99 of about 15 s).  Between passes the
follower instead *probes*: one query on the kept connection for the first event after the
position (``min(created_at)`` after it, served by the ``created_at`` index; sources without such a
query read one row), at
:data:`SHORTEST` seconds after a pass that moved, doubling while nothing comes, up to
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
from typing import TYPE_CHECKING

from audit_pipeline.forwarding.results import PassResult
from audit_pipeline.sources.base import Position

if TYPE_CHECKING:
    from audit_pipeline.forwarding.engine import Forwarder

#: Seconds between a pass that moved and the next probe: bounds the passes per second when busy
#: (0.1 before: at 5,000 events/s the gap was a tenth of an event's latency).
SHORTEST = 0.05
#: How far ahead of the database clock the probe looks (an event stamped in the future still counts).
_AHEAD = dt.timedelta(days=1)


#: ``next_after``: the ``created_at`` of the first event after a position (None: nothing yet).
Probe = Callable[[Position | None], dt.datetime | None]


class Wakeup:
    """Decides, after each pass of a follower, when the next one runs.

    The probe is the forwarder's (:meth:`.engine.Forwarder.pending_after`: ``forward --all`` shares one
    between its sinks, see :class:`.fleet.SharedProbe`); ``align`` makes idle waits end on multiples of the interval, so the
    followers of several sinks probe at the same instants and one answer serves them all.
    """

    def __init__(self, forwarder: Forwarder, *, wall: Callable[[], float] = time.time, align: bool = False) -> None:
        self.forwarder = forwarder
        self.interval = SHORTEST
        self._wall = wall
        self._align = align
        self.probes = 0

    def wait(self, stop: threading.Event, result: PassResult, sweep_due: float) -> None:
        """Return when the next pass should run: an event is ready, the sweep is due (``sweep_due``, on
        the forwarder's clock) or ``stop`` is set.  A pass reads up to its horizon however many windows that
        takes, so after a long catch-up the probe finds events already ready and the next pass follows at once."""
        f = self.forwarder
        moved = result.delivered + result.skipped + result.dead_lettered + result.late_events > 0
        self.interval = SHORTEST if moved else min(self.interval * 2, f.settings.poll_seconds)
        while not stop.is_set():
            gap = self.interval
            if self._align and gap > SHORTEST:
                gap -= f._clock() % gap  # on the shared grid: the other sinks' followers probe now too
            self.pause(stop, min(gap, max(0.0, sweep_due - f._clock())))
            if stop.is_set() or f._clock() >= sweep_due:
                return
            pending = self.probe(result.position)
            f.alive()
            if pending is not None:
                ready_in = (pending.timestamp() + f.settings.settle_seconds) - (self._wall() + f.db_clock_offset)
                self.pause(stop, min(max(0.0, ready_in), f.settings.poll_seconds))
                return
            self.interval = min(self.interval * 2, f.settings.poll_seconds)

    def probe(self, position: Position | None) -> dt.datetime | None:
        """``created_at`` of the first event after the position, however young (one indexed row); the
        forwarder's ``on_lag`` is told how old it is."""
        self.probes += 1
        return self.forwarder.measure_lag(position)

    def pause(self, stop: threading.Event, seconds: float) -> None:
        """Wait, keeping the lease renewed (the heartbeat does; ``check`` raises if it was lost)."""
        f = self.forwarder
        end = f._clock() + seconds
        while not stop.is_set():
            left = end - f._clock()
            if left <= 0:
                break
            stop.wait(min(1.0, left))
            f.lease.check()
