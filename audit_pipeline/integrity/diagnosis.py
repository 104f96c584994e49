"""Naming the first bad event of a modified object: where its lines part from an intact copy, and
whether events were reordered (a hint read from each canonical line's ``created_at`` and ``id``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator


def _order_key(line: bytes) -> tuple[bytes, bytes] | None:
    """(created_at, id) of a canonical line, for spotting reordered events (a diagnosis hint)."""
    at = line.find(b',"created_at":"')
    end_of_id = line.find(b'","type":')
    if not line.startswith(b'{"id":"') or at < 0 or end_of_id < 0:
        return None
    return line[at + 15 : line.find(b'"', at + 15)], line[7:end_of_id]


def first_difference(lines: Iterator[bytes], reference: Iterator[bytes], window: int) -> tuple[int | None, int | None]:
    """The number of the first line that differs from ``reference``, and of the first line out of order
    (looking at most ``window`` lines past the first difference)."""
    first_bad: int | None = None
    out_of_order: int | None = None
    previous: tuple[bytes, bytes] | None = None
    for number, (line, expected) in enumerate(itertools.zip_longest(lines, reference), start=1):
        if line is not None:
            key = _order_key(line)
            if key is not None and previous is not None and key <= previous and out_of_order is None:
                out_of_order = number
            previous = key
        if first_bad is None and line != expected:
            first_bad = number
        if first_bad is not None and (out_of_order is not None or number > first_bad + window):
            break
    return first_bad, out_of_order


def first_out_of_order(lines: Iterator[bytes]) -> int | None:
    """The number of the first line whose (created_at, id) is not after the one before it."""
    previous: tuple[bytes, bytes] | None = None
    for number, line in enumerate(lines, start=1):
        key = _order_key(line)
        if key is not None and previous is not None and key <= previous:
            return number
        previous = key
    return None
