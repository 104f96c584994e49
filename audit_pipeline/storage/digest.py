"""What a check learns about a stored object (size, SHA-256, how it was learned) and the one streaming hash of it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

#: How much of each end of an object a digest read keeps.
EDGE_BYTES = 64 << 10


@dataclass(frozen=True)
class ObjectDigest:
    """Size and SHA-256 of a stored object, and how they were learned (``s3-checksum``,
    ``unchanged-since-written`` or ``read``)."""

    size: int
    sha256: str
    source: str
    bytes_read: int = 0
    #: When the object was read: its first and last bytes (up to ``EDGE_BYTES`` each), where a
    #: file states its schema (CSV header, first NDJSON line, Parquet footer), so no second read is needed.
    head: bytes = b""
    tail: bytes = b""


class Readable(Protocol):
    def readinto(self, buffer: bytearray, /) -> int | None: ...


def hash_stream(handle: Readable, block_size: int) -> ObjectDigest:
    """Hash ``handle`` to its end through one reused buffer, keeping its first and last ``EDGE_BYTES``."""
    buffer = bytearray(block_size)
    view = memoryview(buffer)
    digest, size, head, tail = hashlib.sha256(), 0, b"", b""
    while count := handle.readinto(buffer):
        block = view[:count]
        digest.update(block)
        size += count
        if len(head) < EDGE_BYTES:
            head += block[: EDGE_BYTES - len(head)]
        tail = (tail + block[-EDGE_BYTES:])[-EDGE_BYTES:]
    return ObjectDigest(size, digest.hexdigest(), "read", size, head, tail)
