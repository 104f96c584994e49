"""Several requests in flight per sink, acknowledged strictly in order.

Up to ``concurrency`` batches are being delivered at once (each on its own worker, with its
own retries), while the next one is read and encoded.  Finished batches are handed back in
the order they were read, so the caller moves the position only past the longest contiguous
prefix of acknowledged batches: a crash re-sends at most the batches in flight, never skips one.
With ``concurrency`` 1 nothing runs on a worker, and events arrive at the sink in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

from audit_pipeline.sinks.base import EventBatch

T = TypeVar("T")


class InFlight(Generic[T]):
    def __init__(self, deliver: Callable[[EventBatch], T], concurrency: int, name: str = "sink") -> None:
        self._deliver = deliver
        self.concurrency = max(1, concurrency)
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"deliver-{name}") if self.concurrency > 1 else None
        self._queue: deque[tuple[EventBatch, Future[T]]] = deque()

    def submit(self, part: EventBatch) -> Iterator[tuple[EventBatch, T]]:
        """Start delivering ``part``; yields, in order, the earlier batches that have finished
        (waiting for the oldest while ``concurrency`` batches are already in flight)."""
        if self._pool is None:
            yield part, self._deliver(part)
            return
        while len(self._queue) >= self.concurrency:
            yield self._finish_oldest()
        self._queue.append((part, self._pool.submit(self._deliver, part)))
        while self._queue and self._queue[0][1].done():
            yield self._finish_oldest()

    def drain(self) -> Iterator[tuple[EventBatch, T]]:
        """Every batch still in flight, in order, as each finishes."""
        while self._queue:
            yield self._finish_oldest()

    def _finish_oldest(self) -> tuple[EventBatch, T]:
        part, future = self._queue[0]
        try:
            result = future.result()
        except BaseException:
            self.abandon()
            raise
        self._queue.popleft()
        return part, result

    def abandon(self) -> None:
        """Stop: batches not started are cancelled, running ones are waited for; none is acknowledged."""
        futures = [f for _, f in self._queue]
        self._queue.clear()
        for future in futures:
            future.cancel()
        wait(futures)

    def close(self) -> None:
        self.abandon()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
