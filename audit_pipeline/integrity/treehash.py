"""RFC 6962 hashing of many leaves and nodes at once, standard library only.

Shared by :mod:`.merkle` and :mod:`.leaf_worker` (which must start fast: no numpy, no settings).
Each function takes one buffer and returns the digests concatenated (32 bytes each): a day's
leaves or a whole level of the tree is one tight loop over a memoryview, each digest a copy of
a SHA-256 state that already holds the ``0x00``/``0x01`` prefix.

Why not a column-wise kernel: DuckDB's ``sha256()`` over an Arrow column of the lines was
measured at four times the CPU of this loop (its SHA-256 is portable C; ``hashlib`` is OpenSSL's,
which uses the CPU's SHA instructions), and no other installed library hashes many messages in
one call.  What keeps the log off the export's time is where this runs (:mod:`.leaf_worker`).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

HASH_SIZE = 32
_LEAF_SEED = hashlib.sha256(b"\x00")
_NODE_SEED = hashlib.sha256(b"\x01")


def hash_lines(chunk: memoryview | bytes | bytearray, bounds: Sequence[int]) -> bytes:
    """``SHA-256(0x00 || line)`` of every line ``chunk[bounds[i]:bounds[i + 1]]``, concatenated."""
    view = memoryview(chunk)
    seed = _LEAF_SEED.copy
    digests: list[bytes] = []
    append = digests.append
    for start, end in itertools.pairwise(bounds):
        h = seed()
        h.update(view[start:end])
        append(h.digest())
    return b"".join(digests)


def level_up(hashes: bytes | bytearray | memoryview) -> bytes:
    """The node hash ``SHA-256(0x01 || left || right)`` of every adjacent pair of 32-byte hashes (an even number)."""
    view = memoryview(hashes)
    if len(view) % (2 * HASH_SIZE):
        raise ValueError(f"{len(view) // HASH_SIZE} hashes do not pair up")
    seed = _NODE_SEED.copy
    digests: list[bytes] = []
    append = digests.append
    for start in range(0, len(view), 2 * HASH_SIZE):
        h = seed()
        h.update(view[start : start + 2 * HASH_SIZE])
        append(h.digest())
    return b"".join(digests)


def subtree_roots(hashes: bytes | bytearray | memoryview, height: int) -> bytes:
    """The roots of consecutive perfect subtrees of ``2**height`` hashes each, a level at a time, concatenated."""
    if len(hashes) % (HASH_SIZE << height):
        raise ValueError(f"{len(hashes) // HASH_SIZE} hashes are not whole subtrees of {1 << height}")
    level: bytes | bytearray | memoryview = hashes
    for _ in range(height):
        level = level_up(level)
    return bytes(level)
