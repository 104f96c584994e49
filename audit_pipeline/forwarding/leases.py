"""Holding a sink's lease while forwarding: take it (waiting for a crashed holder's to expire),
keep it alive with a heartbeat, and notice at once when it was lost.

Only one forwarder may deliver to a sink at a time; the position commit is fenced by the lease
in the state database (:mod:`.positions`), and this module is the forwarder's side of it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from audit_pipeline.forwarding.errors import SinkBusy
from audit_pipeline.forwarding.positions import LeaseLost, PositionStore, new_holder


class Lease:
    """One forwarder's claim on one sink."""

    def __init__(
        self,
        positions: PositionStore,
        sink: str,
        lease_seconds: float,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        log: Callable[[str], None],
    ) -> None:
        self.positions = positions
        self.sink = sink
        self.lease_seconds = lease_seconds
        self.holder = new_holder()
        self.held = False
        self._clock = clock
        self._sleep = sleep
        self._log = log
        self._heartbeat: _Heartbeat | None = None

    def acquire(self, wait_seconds: float | None = None) -> None:
        """Take the lease, waiting up to ``wait_seconds`` (default: one lease, so a crashed holder's lease can expire)."""
        wait = self.lease_seconds + 1 if wait_seconds is None else wait_seconds
        deadline = self._clock() + wait
        told = False
        while True:
            other = self.positions.acquire(self.sink, self.holder, self.lease_seconds)
            if other is None:
                self.held = True
                self._heartbeat = _Heartbeat(self.positions, self.sink, self.holder, self.lease_seconds)
                return
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise SinkBusy(
                    f"sink {self.sink} is being forwarded by {other.holder} (lease for {other.expires_in:.0f}s more); "
                    "only one forwarder per sink may run at a time"
                )
            if not told:
                self._log(f"{self.sink}: waiting for the lease held by {other.holder} ({other.expires_in:.0f}s left)")
                told = True
            self._sleep(min(remaining, max(0.2, min(other.expires_in, 1.0))))

    def release(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self.held:
            self.held = False
            with contextlib.suppress(Exception):
                self.positions.release(self.sink, self.holder)

    def check(self) -> None:
        """Fail fast if the heartbeat found the lease gone (the position commit checks it again)."""
        if self._heartbeat is not None and self._heartbeat.lost is not None:
            raise self._heartbeat.lost

    def pause(self, seconds: float) -> None:
        """Sleep (the heartbeat keeps the lease alive), checking the lease in between."""
        end = self._clock() + seconds
        while True:
            remaining = end - self._clock()
            if remaining <= 0:
                return
            self._sleep(min(remaining, 1.0))
            self.check()


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
