"""The transparency log of the exports: one append-only RFC 6962 tree over every sealed event, and its proofs.

Layout in the export store (beside ``manifests/``)::

    tlog/checkpoint                          the newest checkpoint (C2SP signed note)
    tlog/checkpoints/date=YYYY-MM-DD         the checkpoint right after that day was sealed
    tlog/days/date=YYYY-MM-DD.json           which leaves are that day's events (first, size, rows)
    tlog/tile/<L>/<N>[.p/<W>]                the tree's hashes as C2SP tlog-tiles

Leaves are the events' NDJSON lines (with ``\\n``), appended in the order days are sealed and
``created_at, id`` within a day: a backfilled or re-exported day is appended at the end, so the
tree never changes below a published checkpoint.  A day re-exported with the same events adds
nothing (its record already names them); a rechained day's new events are appended and the
record keeps the earlier ranges, whose proofs stay valid.

The manifests and their entry chain are unchanged: the chain proves a day complete and in order
to whoever holds the day; the tree proves one event, or that the log only grew, to whoever holds
a checkpoint and the public key.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from audit_pipeline.integrity.checkpoint import CONTENT_TYPE as NOTE_TYPE
from audit_pipeline.integrity.checkpoint import checkpoint_text
from audit_pipeline.integrity.errors import IntegrityError
from audit_pipeline.integrity.manifest import Manifest, manifest_key, read_optional
from audit_pipeline.integrity.merkle import HASH_SIZE, consistency_path, inclusion_path, leaf_hashes
from audit_pipeline.integrity.signer import Signer
from audit_pipeline.integrity.tiles import CONTENT_TYPE as TILE_TYPE
from audit_pipeline.integrity.tiles import TileError, TileReader, TileWriter
from audit_pipeline.settings import Settings
from audit_pipeline.storage import ObjectStore
from audit_pipeline.writers import open_text_reader

LOG_PREFIX = "tlog"
#: The formats of the bundles (the same strings as :mod:`.proof_verify`'s, which loads ``cryptography``).
BUNDLE_FORMAT = "audit_pipeline.proof/1"
CONSISTENCY_FORMAT = "audit_pipeline.consistency/1"
CHECKPOINT_KEY = f"{LOG_PREFIX}/checkpoint"
DAYS_PREFIX = f"{LOG_PREFIX}/days"
CHECKPOINTS_PREFIX = f"{LOG_PREFIX}/checkpoints"
_SPOOL_BLOCK = 1 << 20
#: Tiles in flight to the store at once (S3 PUTs overlap; a local folder barely cares).
_PUBLISHERS = 4


def day_record_key(day: dt.date) -> str:
    return f"{DAYS_PREFIX}/date={day.isoformat()}.json"


def day_checkpoint_key(day: dt.date) -> str:
    return f"{CHECKPOINTS_PREFIX}/date={day.isoformat()}"


def default_origin(store: ObjectStore) -> str:
    """The log's name when it starts: the export location, as a schema-less URL (kept from then on)."""
    where = "".join("_" if c.isspace() or c == "+" else c for c in f"{store.protocol}/{store.root.strip('/')}")
    return f"audit-pipeline/{where}"


@dataclass(frozen=True)
class LogHead:
    """The newest checkpoint as read from the store (not yet verified)."""

    origin: str | None
    size: int
    root: bytes | None
    note: str | None


def parse_note(note: str) -> LogHead:
    """Origin, size and root of a checkpoint note (signatures are checked by :mod:`.proof_verify`)."""
    lines = note.split("\n")
    try:
        return LogHead(origin=lines[0], size=int(lines[1]), root=base64.b64decode(lines[2], validate=True), note=note)
    except (IndexError, ValueError) as exc:
        raise IntegrityError(f"{CHECKPOINT_KEY} is not a checkpoint ({exc}); restore it from tlog/checkpoints/ or a backup") from None


def read_head(store: ObjectStore) -> LogHead:
    raw = read_optional(store, CHECKPOINT_KEY)
    if raw is None:
        return LogHead(origin=None, size=0, root=None, note=None)
    return parse_note(raw.decode("utf-8"))


@dataclass
class DayRecord:
    """Where one day's events are in the tree: leaves ``[first, size)``; ``checkpoint`` is the note at ``size``."""

    day: str
    first: int
    size: int
    rows: int
    events_sha256: str
    checkpoint: str
    #: Earlier ranges of the day (before a rechain), newest last; their proofs stay valid.
    replaced: list[dict[str, Any]] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True, indent=2) + "\n").encode("utf-8")


def read_record(store: ObjectStore, day: dt.date) -> DayRecord | None:
    raw = read_optional(store, day_record_key(day))
    if raw is None:
        return None
    try:
        return DayRecord(**json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"{day_record_key(day)} is not a day record of the log: {exc}") from None


@contextlib.contextmanager
def local_log_lock(store: ObjectStore) -> Iterator[None]:
    """One appender at a time on this machine (deployments with a state database pass their own lock)."""
    name = hashlib.blake2b(store.uri("").encode(), digest_size=6).hexdigest()
    with open(os.path.join(tempfile.gettempdir(), f"audit_pipeline-tlog-{name}.lock"), "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


#: The log's lock in the state database: the day lock's key space, on a day no export has (0001-01-01).
LOG_LOCK_DAY = dt.date.min


def log_lock(settings: Settings, store: ObjectStore) -> Callable[[], AbstractContextManager[Any]]:
    """Appends to the log one at a time: across hosts through the state database, else on this machine.

    (Not daylock's file lock: closing any handle of that file would drop the export's own day lock.)"""
    state_url = settings.state_url or ""
    if state_url.startswith("postgresql"):
        from audit_pipeline.daylock import day_lock

        return lambda: day_lock(settings, LOG_LOCK_DAY)
    return lambda: local_log_lock(store)


class LogAppender:
    """Leaf hashes of one day as the NDJSON writer produces them; :meth:`seal` appends them once the day is published."""

    def __init__(self, store: ObjectStore, day: dt.date, signer: Signer | None, lock: Callable[[], AbstractContextManager[Any]] | None = None) -> None:
        self.store = store
        self.day = day
        self.signer = signer
        self._lock = lock or (lambda: local_log_lock(store))
        #: 32 bytes per event, on disk: a 2,000,000-event day is 64 MB that need not stay in memory.
        self._spool = tempfile.TemporaryFile(prefix="audit-tlog-")  # noqa: SIM115 - closed by seal/close
        self.rows = 0

    def observe(self, chunk: memoryview | bytes, offsets: np.ndarray | list[int]) -> None:
        """Hash every line of an NDJSON chunk (on the writer's NDJSON thread)."""
        digests = leaf_hashes(chunk, offsets)
        self._spool.write(digests)
        self.rows += len(digests) // HASH_SIZE

    def close(self) -> None:
        self._spool.close()

    def _sign(self, origin: str, size: int, root: bytes) -> str:
        """Signed with the manifests' Ed25519 key; without one the note is bare text (``verify-proof`` refuses it)."""
        if self.signer is not None and self.signer.algorithm == "ed25519":
            from audit_pipeline.integrity.checkpoint import sign_checkpoint  # loads cryptography, as the signer did

            return sign_checkpoint(origin, size, root, self.signer)  # type: ignore[arg-type]
        return checkpoint_text(origin, size, root)

    def seal(self, events_sha256: str) -> str:
        """Append the day's leaves (unless the log already holds exactly these events for the day); one summary line."""
        try:
            with self._lock():
                return self._append(events_sha256)
        finally:
            self.close()

    def _append(self, events_sha256: str) -> str:
        head = read_head(self.store)
        record = read_record(self.store, self.day)
        if record is not None and record.events_sha256 == events_sha256 and record.rows == self.rows and record.size <= head.size:
            return f"log: {self.day} already holds entries {record.first}..{record.size - 1} (tree of {head.size})"
        origin = head.origin or default_origin(self.store)
        reader = TileReader(self.store, LOG_PREFIX, head.size)
        try:
            edge = TileWriter(reader, lambda key, data: None)
        except TileError as exc:
            raise IntegrityError(f"the log's tiles do not match {CHECKPOINT_KEY}: {exc}") from None
        if head.root is not None and edge.root() != head.root:
            raise IntegrityError(
                f"the log's tiles do not lead to the root of {CHECKPOINT_KEY} ({head.size} entries): the tiles were changed; nothing was appended"
            )
        first = head.size
        with ThreadPoolExecutor(max_workers=_PUBLISHERS, thread_name_prefix="tlog") as pool:
            pending: list[Future[None]] = []

            def publish(key: str, data: bytes) -> None:
                pending.append(pool.submit(self.store.put_bytes, key, data, TILE_TYPE))
                if len(pending) >= 4 * _PUBLISHERS:  # bounded: at most a few tiles in memory
                    for job in pending:
                        job.result()
                    pending.clear()

            writer = TileWriter(reader, publish)  # the right-edge tiles come from the reader's cache
            self._spool.seek(0)
            while block := self._spool.read(_SPOOL_BLOCK):
                writer.append(block)
            root = writer.finish()
            for job in pending:
                job.result()
        note = self._sign(origin, writer.size, root)
        replaced = (
            [*record.replaced, {"first": record.first, "size": record.size, "rows": record.rows, "events_sha256": record.events_sha256}] if record else []
        )
        new = DayRecord(
            day=self.day.isoformat(), first=first, size=writer.size, rows=self.rows, events_sha256=events_sha256, checkpoint=note, replaced=replaced
        )
        self.store.put_bytes(day_checkpoint_key(self.day), note.encode("utf-8"), NOTE_TYPE)
        self.store.put_bytes(day_record_key(self.day), new.to_bytes(), "application/json")
        self.store.put_bytes(CHECKPOINT_KEY, note.encode("utf-8"), NOTE_TYPE)  # last: the log grows only once all is written
        return f"log: {self.day} appended as entries {first}..{writer.size - 1}, checkpoint {writer.size} ({CHECKPOINT_KEY})"


# -- proofs ---------------------------------------------------------------------------------------
def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in hashes]


def record_days(store: ObjectStore) -> list[dt.date]:
    days: list[dt.date] = []
    for key in store.list(DAYS_PREFIX):
        name = key.rsplit("/", 1)[-1]
        if name.startswith("date=") and name.endswith(".json"):
            with contextlib.suppress(ValueError):
                days.append(dt.date.fromisoformat(name[5:-5]))
    return sorted(days)


def find_event(store: ObjectStore, event_id: str, day: dt.date) -> tuple[int, str] | None:
    """The 0-based row and the NDJSON line (without ``\\n``) of an event in a day's export, or None."""
    raw = read_optional(store, manifest_key(day))
    if raw is None:
        return None
    entry = Manifest.from_bytes(raw).object_for("ndjson")
    if entry is None:
        return None
    needle = b'{"id":' + json.dumps(event_id).encode("utf-8") + b","
    with store.open(entry.key) as handle, open_text_reader(handle, entry.key) as text:
        for row, line in enumerate(text):
            if line.startswith(needle):
                return row, line.removesuffix(b"\n").decode("utf-8")
    return None


def prove_event(store: ObjectStore, event_id: str, day: dt.date | None = None) -> dict[str, Any]:
    """The offline bundle of one event: its line, leaf index, inclusion path, checkpoints and consistency path."""
    head = read_head(store)
    if head.note is None:
        raise IntegrityError(f"no transparency log in {store.uri(LOG_PREFIX)}: export a day with integrity enabled first")
    days = [day] if day is not None else list(reversed(record_days(store)))
    for candidate in days:
        record = read_record(store, candidate)
        if record is None or not record.rows:
            continue
        found = find_event(store, event_id, candidate)
        if found is None:
            continue
        row, line = found
        index = record.first + row
        reader = TileReader(store, LOG_PREFIX, head.size)
        try:
            inclusion = inclusion_path(reader, index, record.size)
            consistency = consistency_path(reader, record.size, head.size)
        except TileError as exc:
            raise IntegrityError(f"cannot prove {event_id}: {exc}") from None
        return {
            "format": BUNDLE_FORMAT,
            "event_id": event_id,
            "day": candidate.isoformat(),
            "event": line + "\n",
            "leaf_index": index,
            "inclusion_path": _b64(inclusion),
            "checkpoint": record.checkpoint,
            "latest_checkpoint": head.note,
            "consistency_path": _b64(consistency),
        }
    where = f"the export of {day}" if day else "any day of the log"
    raise IntegrityError(f"event {event_id} is not in {where} ({store.uri('')}); check the id, or give --day")


def prove_consistency(store: ObjectStore, old_note: str) -> dict[str, Any]:
    """The bundle proving the newest checkpoint extends ``old_note`` (an earlier checkpoint of this log)."""
    head = read_head(store)
    old = parse_note(old_note)
    if head.note is None or head.origin != old.origin:
        raise IntegrityError(f"the checkpoint is of the log {old.origin!r}, not of {store.uri(LOG_PREFIX)} ({head.origin!r})")
    if old.size > head.size:
        raise IntegrityError(f"the log was rolled back: the checkpoint has {old.size} entries, {CHECKPOINT_KEY} has {head.size}")
    if old.size == 0:
        raise IntegrityError("a checkpoint of the empty tree needs no consistency proof")
    try:
        path = consistency_path(TileReader(store, LOG_PREFIX, head.size), old.size, head.size)
    except TileError as exc:
        raise IntegrityError(f"cannot prove consistency: {exc}") from None
    return {"format": CONSISTENCY_FORMAT, "old_checkpoint": old_note, "checkpoint": head.note, "consistency_path": _b64(path)}
