"""Read-ahead for streams: produce the next items on a thread while the caller works on this one.

The source read (ADBC, HTTP) and the encoding release the GIL, so reading ahead overlaps
them with writing or sending.  The queue is bounded (``depth``), so memory stays bounded
whatever the stream's length; an error in the producer is raised in the consumer, and a
consumer that stops early stops the producer and closes the underlying iterator.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def read_ahead(items: Iterator[T], depth: int = 1, name: str = "read-ahead") -> Iterator[T]:
    """Yield ``items`` in order, at most ``depth`` of them produced ahead on a worker thread."""
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)
        finally:
            close = getattr(items, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                slots.get_nowait()
        thread.join(timeout=30)
