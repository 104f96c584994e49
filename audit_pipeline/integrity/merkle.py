"""RFC 6962 Merkle trees: leaf hashes of whole NDJSON chunks, tree heads of any size, inclusion and consistency proofs.

The hashing is RFC 6962's (``SHA-256(0x00 || leaf)``, ``SHA-256(0x01 || left || right)``); the
leaf is an event's NDJSON line exactly as the export writes it, *with* its ``\\n``: the same
bytes the entry chain hashes (:mod:`.chain`), so one canonical form serves both.

Proofs are generated from any :class:`NodeSource`, something that returns the hash of a perfect
subtree (``node(level, index)``): an in-memory list here, the tlog tiles of the store in
:mod:`.tiles`.  Verification lives apart, in :mod:`.proof_verify`, so that an auditor reads
only that module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from audit_pipeline.integrity.treehash import HASH_SIZE, hash_lines, subtree_roots

__all__ = [
    "EMPTY_ROOT",
    "MemoryTree",
    "NodeSource",
    "consistency_path",
    "inclusion_path",
    "leaf_hash",
    "leaf_hashes",
    "node_hash",
    "perfect_root",
    "root_of",
    "subtree_hash",
    "tree_root",
]


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)`` (RFC 6962 §2.1).  :mod:`.proof_verify` has its own copy: it imports nothing of ours."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


#: The root of the empty tree: SHA-256 of nothing.
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hashes(chunk: memoryview | bytes, offsets: Sequence[int] | np.ndarray) -> bytes:
    """The leaf hashes of every line of a chunk, 32 bytes each, concatenated.

    ``offsets`` are the line starts plus the chunk's end (as the NDJSON encoder hands them over).
    Each line is a slice of the chunk (no copy); see :mod:`.treehash`.
    """
    return hash_lines(chunk, offsets.tolist() if isinstance(offsets, np.ndarray) else offsets)


def perfect_root(hashes: bytes | bytearray | memoryview) -> bytes:
    """The root over a power-of-two number of concatenated 32-byte node hashes."""
    count = len(hashes) // HASH_SIZE
    if not count or count & (count - 1) or len(hashes) % HASH_SIZE:
        raise ValueError(f"{count} hashes are not a perfect subtree")
    return subtree_roots(hashes, count.bit_length() - 1)


def root_of(hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (any length): an odd last node moves up unchanged, as in RFC 6962."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


class NodeSource(Protocol):
    """Where proofs take node hashes from: ``node(k, i)`` is the root of leaves ``[i * 2**k, (i + 1) * 2**k)``."""

    def node(self, level: int, index: int) -> bytes: ...


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(source: NodeSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for the ranges RFC 6962's recursion visits (``start`` a multiple of the range's left split)."""
    n = end - start
    if n <= 0:
        raise ValueError("an empty range has no subtree hash")
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return source.node(level, start >> level)
    k = _split(n)
    return node_hash(subtree_hash(source, start, start + k), subtree_hash(source, start + k, end))


def tree_root(source: NodeSource, size: int) -> bytes:
    """The root hash of the first ``size`` leaves."""
    return subtree_hash(source, 0, size) if size else EMPTY_ROOT


def inclusion_path(source: NodeSource, index: int, size: int) -> list[bytes]:
    """RFC 6962 PATH(index, D[0:size]), bottom-up (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} entries")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(subtree_hash(source, lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree_hash(source, lo, lo + k))
            lo += k
    return path[::-1]


def consistency_path(source: NodeSource, old_size: int, new_size: int) -> list[bytes]:
    """RFC 6962 PROOF(old_size, D[0:new_size]), bottom-up (RFC 9162 §2.1.4.1); empty when the sizes are equal."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from {old_size} to {new_size} entries")
    path: list[bytes] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while True:
        if m == hi - lo:
            if not complete:
                path.append(subtree_hash(source, lo, hi))
            break
        k = _split(hi - lo)
        if m <= k:
            path.append(subtree_hash(source, lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree_hash(source, lo, lo + k))
            lo += k
            m -= k
            complete = False
    return path[::-1]


class MemoryTree:
    """A whole tree in memory (tests, small logs): every level kept."""

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append_hash(leaf_hash(leaf))

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append_hash(self, digest: bytes) -> None:
        self.levels[0].append(digest)
        level = 0
        while len(self.levels[level]) % 2 == 0:
            pair = self.levels[level][-2:]
            if len(self.levels) == level + 1:
                self.levels.append([])
            self.levels[level + 1].append(node_hash(pair[0], pair[1]))
            level += 1

    def node(self, level: int, index: int) -> bytes:
        return self.levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        return tree_root(self, self.size if size is None else size)
