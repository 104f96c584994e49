"""A reader on the other end of a FIFO, for the tests of ``--output`` to a named pipe."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def fifo_reader(path: Path) -> Iterator[list[bytes]]:
    """Create the FIFO ``path`` and read it to its end in a thread; the list holds what arrived once the block ends."""
    os.mkfifo(path)
    received: list[bytes] = []

    def read() -> None:
        with open(path, "rb") as pipe:  # blocks until the writer opens its end
            received.append(pipe.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    yield received
    reader.join(timeout=60)  # a safety net against a hung test, not a timing assertion
    assert not reader.is_alive(), f"nothing closed the write end of {path}"
