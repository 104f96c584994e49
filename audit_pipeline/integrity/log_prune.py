"""Pruning the transparency log with retention, without changing the tree (c2sp.org/tlog-tiles, "Pruning").

Once retention has deleted a day's NDJSON, its events cannot be proved any more, so their leaf
tiles need not be kept either.  The log records a *minimum index* (``tlog/minimum-index``, the
first leaf of the oldest day it still serves) and deletes the full level-0 tiles wholly below
it, except the one holding the leaf just before it.  Everything else stays: the tiles of level
1 and up (1/256 of the leaves), every checkpoint and day record.  The tree's structure and
root do not change, so:

- every bundle made before the pruning still verifies (it carries its own paths);
- new inclusion proofs work for every event from the minimum index on;
- consistency proofs from any checkpoint of a size at or after the minimum index to the newest
  work: a proof needs, inside the old tree, only whole subtrees (upper tiles) and the subtrees
  that end at its size (in the tiles from the one before the minimum index on).

Checkpoints older than the minimum index keep their signatures and stay valid, but proofs from
them can no longer be computed (``verify`` says how many it skips).
"""

from __future__ import annotations

import datetime as dt
import json

from audit_pipeline.core.layout import day_in_data_key
from audit_pipeline.integrity.proofs import LOG_PREFIX, MINIMUM_KEY, minimum_index, read_head, read_record, record_days
from audit_pipeline.integrity.tiles import TILE_WIDTH
from audit_pipeline.storage.object_store import ObjectStore

__all__ = ["prune_log", "prune_to_exports"]


def prune_log(store: ObjectStore, keep_from: dt.date) -> str | None:
    """Serve the log from the first leaf of the oldest day on or after ``keep_from``; delete the leaf tiles before it.

    The minimum index only rises.  Returns one line, or None when there is nothing to prune."""
    head = read_head(store)
    if head.note is None:
        return None
    kept = [r for r in (read_record(store, d) for d in record_days(store) if d >= keep_from) if r is not None]
    starts = [r.first for r in kept] + [int(old["first"]) for r in kept for old in r.replaced]
    target = min(starts) if starts else head.size  # no day kept: only the tiles at the newest edge are still needed
    floor = max(minimum_index(store), min(target, head.size))
    # Keep the tile of leaf ``floor - 1``: consistency proofs from a checkpoint at ``floor`` end there.
    cutoff = max(0, floor - 1) // TILE_WIDTH
    due = [key for key in store.list(f"{LOG_PREFIX}/tile/0/") if (index := _tile_index(key)) is not None and index < cutoff]
    if floor == minimum_index(store) and not due:
        return None
    # The minimum index first: a crash in between leaves tiles that are merely no longer needed.
    store.put_bytes(MINIMUM_KEY, (json.dumps({"minimum_index": floor, "kept_from": keep_from.isoformat()}) + "\n").encode(), "application/json")
    for key in due:
        store.delete(key)
    deleted = len(due)
    return f"log: served from entry {floor} on (days from {keep_from}); {deleted} leaf tiles before it deleted, upper tiles and checkpoints kept"


def prune_to_exports(store: ObjectStore) -> str | None:
    """:func:`prune_log` from the earliest day whose NDJSON export is still in the store (what retention left)."""
    days = sorted(d for d in (day_in_data_key(k) for k in store.list("ndjson")) if d is not None)
    return prune_log(store, days[0] if days else dt.date.max)


def _tile_index(key: str) -> int | None:
    """``N`` of ``tlog/tile/0/x001/x234/067`` or ``…/067.p/12``; None for anything else."""
    path = key.split(f"{LOG_PREFIX}/tile/0/", 1)[-1].split(".p/")[0]
    parts = path.split("/")
    if not parts or not all(p[1:].isdigit() and p[0] == "x" for p in parts[:-1]) or not parts[-1].isdigit():
        return None
    return int("".join(p.lstrip("x") for p in parts))
