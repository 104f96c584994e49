"""Whole CSV records from a byte stream, for any record size, with bounded memory.

Arrow's CSV reader needs every record inside one parse block; a record longer than the
block (a 20 MB ``metadata`` value) fails with "straddling object straddles two block
boundaries".  Splitting the stream at record ends first, and handing the reader whole
records, removes that limit: memory is then bounded by the block size or the largest
record, whichever is bigger.

In our RFC 4180 output a record ends at a ``\\n`` outside quotes, and a ``"`` inside a quoted
value is doubled, so the parity of the ``"`` bytes seen so far tells inside from outside.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

BLOCK = 8 << 20
_QUOTE, _NEWLINE = 0x22, 0x0A


def _scan(data: bytes, parity: int) -> tuple[np.ndarray, int]:
    """Positions of record-ending ``\\n`` in ``data`` and the quote parity after it, starting from ``parity``."""
    raw = np.frombuffer(data, dtype=np.uint8)
    # uint8 wraps around, which keeps the parity (all that matters) and a quarter of the memory.
    inside = (np.cumsum(raw == _QUOTE, dtype=np.uint8) + parity) & 1
    ends = np.flatnonzero((raw == _NEWLINE) & (inside == 0))
    return ends, int(inside[-1]) if len(raw) else parity


def record_blocks(handle: BinaryIO, block: int = BLOCK) -> Iterator[bytes]:
    """Chunks of whole records (the last one may lack its line end), in order, about ``block`` bytes each."""
    pending: list[bytes] = []
    parity = 0
    while data := handle.read(block):
        ends, after = _scan(data, parity)
        if not len(ends):
            pending.append(data)  # still inside one record longer than a block
            parity = after
            continue
        cut = int(ends[-1]) + 1
        yield b"".join([*pending, data[:cut]])
        pending = [data[cut:]] if cut < len(data) else []
        parity = after  # the record boundary at ``cut`` has even parity, so this is the rest's own parity
    if pending:
        yield b"".join(pending)


def count_records(handle: BinaryIO, block: int = BLOCK) -> int:
    """Complete records (ended by their line end) in a CSV stream, reading ``block`` bytes at a time.

    A cut-off last record is not counted: every record we write ends with CRLF, so one
    without is damage, not a row.
    """
    records, parity = 0, 0
    while data := handle.read(block):
        ends, parity = _scan(data, parity)
        records += len(ends)
    return records
