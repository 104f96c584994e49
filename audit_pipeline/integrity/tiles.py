"""The Merkle tree stored as C2SP tlog-tiles (https://c2sp.org/tlog-tiles), height 8, in the export store.

A tile at level ``L`` holds up to 256 consecutive hashes of tree level ``8L``; tile ``N`` of level
``L`` starts at node ``256N``.  A full tile is ``tile/<L>/<N>``, the right-edge partial one
``tile/<L>/<N>.p/<W>`` (``W`` hashes); ``N`` is written in groups of three digits, all but the
last prefixed with ``x`` (``1234067`` → ``x001/x234/067``).  Level-0 tiles hold the leaf hashes.

:class:`TileWriter` appends leaf hashes to a tree of known size: it reads only the right-edge
partial tiles, writes every tile it completes and the new partial tiles, and returns the new
root.  Its output depends only on the leaves, so appending the same leaves again rewrites the
same bytes.  :class:`TileReader` serves node hashes to :mod:`.merkle`'s proof functions.
"""

from __future__ import annotations

from collections.abc import Callable

from audit_pipeline.integrity.merkle import EMPTY_ROOT, node_hash, perfect_root
from audit_pipeline.integrity.treehash import HASH_SIZE, subtree_roots
from audit_pipeline.storage.object_store import ObjectStore

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
TILE_BYTES = TILE_WIDTH * HASH_SIZE
CONTENT_TYPE = "application/octet-stream"


def encode_index(n: int) -> str:
    """``1234067`` → ``x001/x234/067``; ``0`` → ``000``."""
    if n < 0:
        raise ValueError("a tile index is not negative")
    groups: list[int] = []
    while True:
        groups.append(n % 1000)
        n //= 1000
        if not n:
            break
    groups.reverse()
    return "/".join([*(f"x{g:03d}" for g in groups[:-1]), f"{groups[-1]:03d}"])


def tile_key(prefix: str, level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``<prefix>/tile/<L>/<N>`` for a full tile, ``.p/<W>`` appended for a partial one."""
    if not 0 < width <= TILE_WIDTH:
        raise ValueError(f"a tile holds 1 to {TILE_WIDTH} hashes, not {width}")
    partial = f".p/{width}" if width < TILE_WIDTH else ""
    return f"{prefix}/tile/{level}/{encode_index(index)}{partial}"


def tile_width(size: int, level: int, index: int) -> int:
    """How many hashes tile ``index`` of ``level`` holds in a tree of ``size`` leaves (0: none yet)."""
    nodes = size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, nodes - index * TILE_WIDTH))


class TileError(Exception):
    """A tile is missing or has the wrong length."""


class TileReader:
    """Node hashes of the tree of ``size`` leaves, read tile by tile from the store (cached)."""

    def __init__(self, store: ObjectStore, prefix: str, size: int) -> None:
        self.store = store
        self.prefix = prefix
        self.size = size
        self._tiles: dict[tuple[int, int], bytes] = {}

    def tile(self, level: int, index: int) -> bytes:
        cached = self._tiles.get((level, index))
        if cached is not None:
            return cached
        width = tile_width(self.size, level, index)
        if not width:
            raise TileError(f"tile {level}/{index} is beyond a tree of {self.size} entries")
        key = tile_key(self.prefix, level, index, width)
        try:
            data = self.store.read_bytes(key)
        except Exception as exc:  # a missing or unreadable tile: the tree cannot be read at this size
            raise TileError(f"{key} cannot be read ({type(exc).__name__}): the tree of {self.size} entries is incomplete") from None
        if len(data) != width * HASH_SIZE:
            raise TileError(f"{key} holds {len(data)} bytes, not {width * HASH_SIZE}")
        self._tiles[(level, index)] = data
        return data

    def node(self, level: int, index: int) -> bytes:
        tile_level, height = divmod(level, TILE_HEIGHT)
        first = index << height  # the first of the 2**height entries of the tile level below this node
        tile = self.tile(tile_level, first // TILE_WIDTH)
        start = (first % TILE_WIDTH) * HASH_SIZE
        entries = tile[start : start + (HASH_SIZE << height)]
        if len(entries) != HASH_SIZE << height:
            raise TileError(f"node {level}/{index} is not complete in a tree of {self.size} entries")
        return perfect_root(entries)


class TileWriter:
    """Append leaf hashes to the tree of ``size`` leaves; tiles go to ``publish(key, data)`` as they are completed."""

    def __init__(self, reader: TileReader, publish: Callable[[str, bytes], None], known: tuple[int, bytes] | None = None) -> None:
        """``known``: ``(N, roots)``, the roots of level-0 tiles ``N, N + 1, ...`` already computed (by the leaf
        worker, while the export ran); those tiles are then published without hashing them again.  The first
        one used is checked against its hashes, so roots computed for another position are refused."""
        self.prefix = reader.prefix
        self.size = reader.size
        self._publish = publish
        self._known = known
        self._checked = False
        #: Per tile level: the hashes of its right-edge tile so far, and that tile's index.
        self._edge: list[bytearray] = []
        self._index: list[int] = []
        level = 0
        while (reader.size >> (TILE_HEIGHT * level)) > 0:
            nodes = reader.size >> (TILE_HEIGHT * level)
            index, width = divmod(nodes, TILE_WIDTH)
            self._edge.append(bytearray(reader.tile(level, index) if width else b""))
            self._index.append(index)
            level += 1

    def _extend(self, level: int, hashes: bytes | memoryview) -> None:
        """Add hashes to the right edge of ``level``; publish the tiles they complete, and their roots one level up.

        The roots of all the tiles completed here are computed together, a tree level at a time
        over one buffer (:func:`.merkle.subtree_roots`), not tile by tile and pair by pair.
        """
        while len(self._edge) <= level:
            self._edge.append(bytearray())
            self._index.append(0)
        edge = self._edge[level]
        room = TILE_BYTES - len(edge)
        if len(hashes) < room:
            edge += hashes
            return
        completed = bytearray(edge)
        completed += hashes[:room]
        whole = room + (len(hashes) - room) // TILE_BYTES * TILE_BYTES
        completed += hashes[room:whole]
        self._edge[level] = bytearray(hashes[whole:])
        view = memoryview(completed)
        first = self._index[level]
        for offset in range(0, len(view), TILE_BYTES):
            self._publish(tile_key(self.prefix, level, self._index[level]), bytes(view[offset : offset + TILE_BYTES]))
            self._index[level] += 1
        self._extend(level + 1, self._roots(level, first, view))

    def _roots(self, level: int, first: int, tiles: memoryview) -> bytes:
        """The roots of whole tiles ``first, first + 1, ...`` of ``level``: from ``known`` where it has them."""
        if level or self._known is None:
            return subtree_roots(tiles, TILE_HEIGHT)
        start, known = self._known
        roots = bytearray()
        for k in range(len(tiles) // TILE_BYTES):
            at = (first + k - start) * HASH_SIZE
            tile = tiles[k * TILE_BYTES : (k + 1) * TILE_BYTES]
            if 0 <= at < len(known):
                root = known[at : at + HASH_SIZE]
                if not self._checked:
                    if perfect_root(tile) != root:
                        raise ValueError(f"the precomputed root of tile 0/{first + k} does not match its hashes")
                    self._checked = True
                roots += root
            else:
                roots += perfect_root(tile)
        return bytes(roots)

    def append(self, hashes: bytes | memoryview) -> None:
        """Leaf hashes, 32 bytes each, concatenated (any number: a day's worth is best handed over in large blocks)."""
        if len(hashes) % HASH_SIZE:
            raise ValueError("leaf hashes come in 32-byte units")
        if not len(hashes):
            return
        self._extend(0, memoryview(hashes))
        self.size += len(hashes) // HASH_SIZE

    def finish(self) -> bytes:
        """Publish the partial right-edge tiles; returns the root of the tree as it now is."""
        for level in range(len(self._edge) - 1, -1, -1):
            if self._edge[level]:
                self._publish(tile_key(self.prefix, level, self._index[level], len(self._edge[level]) // HASH_SIZE), bytes(self._edge[level]))
        return self.root()

    def root(self) -> bytes:
        """The root of the tree as it now is, from the right-edge tiles alone."""
        parts: list[bytes] = []
        for level in range(len(self._edge) - 1, -1, -1):
            edge = bytes(self._edge[level])
            width = len(edge) // HASH_SIZE
            position = 0
            for height in range(TILE_HEIGHT - 1, -1, -1):
                if width >> height & 1:
                    parts.append(perfect_root(edge[position : position + (HASH_SIZE << height)]))
                    position += HASH_SIZE << height
        if not parts:
            return EMPTY_ROOT
        root = parts[-1]
        for part in reversed(parts[:-1]):
            root = node_hash(part, root)
        return root
