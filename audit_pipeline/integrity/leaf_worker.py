"""The transparency log's hashing in a process of its own, fed the NDJSON chunks as the export writes them.

Why a process: a leaf hash is one SHA-256 per event (about 1 µs of Python per event even with
OpenSSL's SHA instructions) and the tree's lower levels as many again; in the exporting process
that work holds the GIL against the export's own threads.  Here it runs beside them, on another
core, and the export only copies each chunk into a pipe.  What it computes is exactly what
:func:`.merkle.leaf_hashes` computes (the same :mod:`.treehash` functions), so the log does not
depend on where it was hashed; :class:`.proofs.LogAppender` falls back to hashing the published
NDJSON itself if this process fails.

Protocol (stdin): per chunk a header ``<II`` (lines, bytes), the ``lines + 1`` line offsets as
little-endian int64, then the chunk.  Output, in the folder given as the first argument:
``leaves`` (32 bytes per event, in order) and ``roots`` (the root of every whole level-0 tile
of the day's leaves after the first ``skip`` ones, the second argument: the leaves that complete
the tile the log's right edge had when the export began).  On end of input it prints one JSON
line ``{"rows": N, "tiles": T}`` and exits 0.

    python -m audit_pipeline.integrity.leaf_worker FOLDER SKIP < chunks
"""

from __future__ import annotations

import array
import json
import struct
import sys
from pathlib import Path
from typing import BinaryIO

from audit_pipeline.integrity.treehash import HASH_SIZE, hash_lines, subtree_roots

HEADER = struct.Struct("<II")
TILE_HEIGHT = 8
TILE_BYTES = HASH_SIZE << TILE_HEIGHT
LEAVES = "leaves"
ROOTS = "roots"


def _read(stream: BinaryIO, size: int) -> bytes:
    """Exactly ``size`` bytes, or fewer only at the end of the input."""
    data = stream.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def run(stream: BinaryIO, folder: Path, skip: int) -> dict[str, int]:
    """Hash every chunk of ``stream`` into ``folder``; returns the counts printed at the end."""
    rows = tiles = 0
    pending = bytearray()  # leaf hashes after ``skip`` not yet in a whole tile
    with open(folder / LEAVES, "wb") as leaves, open(folder / ROOTS, "wb") as roots:
        while header := _read(stream, HEADER.size):
            if len(header) != HEADER.size:
                raise ValueError("the input ends inside a chunk header")
            lines, size = HEADER.unpack(header)
            bounds = array.array("q")
            bounds.frombytes(_read(stream, 8 * (lines + 1)))
            chunk = _read(stream, size)
            if len(bounds) != lines + 1 or len(chunk) != size or (lines and (bounds[0] != 0 or bounds[-1] != size)):
                raise ValueError("the input ends inside a chunk, or its offsets do not fit it")
            digests = hash_lines(chunk, bounds)
            leaves.write(digests)
            pending += digests[max(0, skip - rows) * HASH_SIZE :]
            rows += lines
            whole = len(pending) // TILE_BYTES * TILE_BYTES
            if whole:
                roots.write(subtree_roots(memoryview(pending)[:whole], TILE_HEIGHT))
                tiles += whole // TILE_BYTES
                del pending[:whole]
    return {"rows": rows, "tiles": tiles}


def main(argv: list[str]) -> int:
    folder, skip = Path(argv[1]), int(argv[2])
    try:
        counts = run(sys.stdin.buffer, folder, skip)
    except (OSError, ValueError) as exc:
        print(f"leaf worker: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
