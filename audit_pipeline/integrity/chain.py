"""The entry chain: ``h_i = SHA-256(h_{i-1} || line_i)`` over a day's events in (created_at, id) order.

``line_i`` is the event's NDJSON line exactly as the export writes it, *including* its
terminating ``\\n`` (so the NDJSON file, read line by line, is the input as-is).  ``h_0`` is
the seed: the previous day's last hash, or :data:`GENESIS` for the first day of a chain.
Hashes are the raw 32-byte digests; manifests show them as lowercase hex.

One SHA-256 per event is unavoidable; the loop stays cheap by hashing memoryview slices of
the NDJSON chunk the writer already produced (no copy, no per-row JSON).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable

import numpy as np

from audit_pipeline.formats.encoding import ndjson_line_offsets

#: Seed of a chain's first day: 32 zero bytes.
GENESIS = bytes(32)


def line_offsets(chunk: memoryview | bytes) -> list[int]:
    """Start of every line plus the end of the chunk; a last line without ``\\n`` still counts."""
    offsets: list[int] = ndjson_line_offsets(chunk).tolist()
    if offsets[-1] != len(chunk):
        offsets.append(len(chunk))
    return offsets


class EntryChain:
    """Feed it a day's canonical lines in order (in chunks of whole lines); read the head at the end."""

    def __init__(self, seed: bytes = GENESIS, checkpoint_rows: int = 10_000, *, hash_events: bool = True) -> None:
        """``hash_events=False``: the caller already hashes the same bytes (the uncompressed NDJSON file)
        and hands the digest over with :meth:`adopt_events_sha256`, saving one SHA-256 pass over the day."""
        if len(seed) != 32:
            raise ValueError("a chain seed is a 32-byte SHA-256 digest")
        self.seed = seed
        self.head = seed
        self.rows = 0
        self.checkpoint_rows = checkpoint_rows
        #: Hex head after every ``checkpoint_rows`` events.
        self.checkpoints: list[str] = []
        self._events = hashlib.sha256() if hash_events else None
        self._adopted: str | None = None

    def update(self, chunk: memoryview | bytes, offsets: list[int] | np.ndarray | None = None) -> None:
        """Hash every line of ``chunk``; ``offsets`` as from :func:`line_offsets` (or the encoder) when already known."""
        if not len(chunk):
            return
        if offsets is None:
            offsets = line_offsets(chunk)
        elif isinstance(offsets, np.ndarray):
            offsets = offsets.tolist()
        if self._events is not None:
            self._events.update(chunk)
        view = memoryview(chunk)
        sha = hashlib.sha256
        head = self.head
        n = len(offsets) - 1
        i = 0
        every = self.checkpoint_rows
        while i < n:
            stop = min(n, i + every - self.rows % every)
            for start, end in zip(offsets[i:stop], offsets[i + 1 : stop + 1], strict=True):
                digest = sha(head)
                digest.update(view[start:end])
                head = digest.digest()
            self.rows += stop - i
            if self.rows % every == 0:
                self.checkpoints.append(head.hex())
            i = stop
        self.head = head

    @property
    def last_hash(self) -> str:
        return self.head.hex()

    def adopt_events_sha256(self, hexdigest: str) -> None:
        """The events' SHA-256 as computed elsewhere over exactly the bytes fed to :meth:`update`."""
        if self._events is not None:
            raise ValueError("this chain hashes its events itself")
        self._adopted = hexdigest

    @property
    def events_sha256(self) -> str:
        """SHA-256 of all lines concatenated: the day's events, independent of the seed."""
        if self._events is not None:
            return self._events.hexdigest()
        if self._adopted is None:
            raise ValueError("the events' SHA-256 was not handed over (adopt_events_sha256)")
        return self._adopted


def chain_lines(lines: Iterable[bytes], seed: bytes) -> bytes:
    """The head after ``lines``: the definition, one line at a time (for tests and small inputs)."""
    head = seed
    for line in lines:
        head = hashlib.sha256(head + line).digest()
    return head


def split_lines(chunk: memoryview | bytes) -> list[bytes]:
    """The lines of a chunk as separate byte strings (each with its ``\\n``)."""
    offsets = line_offsets(chunk)
    data = bytes(chunk)
    return [data[a:b] for a, b in itertools.pairwise(offsets)]


def rows_of_positions(offsets: list[int], positions: np.ndarray) -> np.ndarray:
    """0-based line index, within the chunk, of each byte position."""
    return np.searchsorted(np.asarray(offsets), positions, side="right") - 1
