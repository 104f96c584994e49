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
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from audit_pipeline.config.settings import Settings
from audit_pipeline.core.layout import manifest_key
from audit_pipeline.formats.writers import open_text_reader
from audit_pipeline.integrity.canonical import ndjson_chunks
from audit_pipeline.integrity.chain import line_offsets
from audit_pipeline.integrity.checkpoint import CONTENT_TYPE as NOTE_TYPE
from audit_pipeline.integrity.checkpoint import checkpoint_text
from audit_pipeline.integrity.errors import IntegrityError
from audit_pipeline.integrity.leaf_worker import HEADER as _WORKER_HEADER
from audit_pipeline.integrity.leaf_worker import LEAVES, ROOTS
from audit_pipeline.integrity.manifest import Manifest, read_optional
from audit_pipeline.integrity.merkle import consistency_path, inclusion_path, leaf_hashes
from audit_pipeline.integrity.signer import Signer
from audit_pipeline.integrity.tiles import CONTENT_TYPE as TILE_TYPE
from audit_pipeline.integrity.tiles import TILE_WIDTH, TileError, TileReader, TileWriter
from audit_pipeline.integrity.timestamps import CONTENT_TYPE as TOKEN_TYPE
from audit_pipeline.integrity.timestamps import TimestampError, load_certificates, request_token, token_key
from audit_pipeline.integrity.treehash import HASH_SIZE
from audit_pipeline.storage.object_store import ObjectStore

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
#: The pipe to the leaf worker (Linux allows up to /proc/sys/fs/pipe-max-size, 1 MiB by default).
_PIPE_BYTES = 1 << 20
#: How long seal waits for the worker to hash what it was sent (it keeps up with the export; this is a stuck process).
_WORKER_WAIT = 600

logger = logging.getLogger(__name__)


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
        from audit_pipeline.exports.daylock import day_lock

        return lambda: day_lock(settings, LOG_LOCK_DAY)
    return lambda: local_log_lock(store)


class _WorkerFailed(Exception):
    """The leaf worker did not hash the day (it could not start, died, or counted other rows)."""


def _discard_worker(process: subprocess.Popen[bytes], folder: Path) -> None:
    """End the worker if it still runs and remove its folder (also when the appender is dropped unsealed)."""
    if process.poll() is None:
        with contextlib.suppress(OSError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    shutil.rmtree(folder, ignore_errors=True)


class _Worker:
    """One day's :mod:`.leaf_worker` process: chunks go in through a pipe, leaf hashes and tile roots come out in files."""

    def __init__(self, skip: int) -> None:
        self.skip = skip
        self.folder = Path(tempfile.mkdtemp(prefix="audit-tlog-"))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "audit_pipeline.integrity.leaf_worker", str(self.folder), str(skip)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise _WorkerFailed(f"the leaf worker did not start ({exc})") from None
        self._discard = weakref.finalize(self, _discard_worker, self.process, self.folder)
        assert self.process.stdin is not None
        self._stdin = self.process.stdin
        with contextlib.suppress(OSError):  # a 1 MiB pipe: a chunk crosses in a few writes, not dozens (Linux; else the default)
            fcntl.fcntl(self._stdin.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)

    def send(self, chunk: memoryview | bytes, offsets: np.ndarray | list[int]) -> None:
        bounds = np.asarray(offsets, dtype="<i8")
        try:
            self._stdin.write(_WORKER_HEADER.pack(len(bounds) - 1, len(chunk)))
            self._stdin.write(bounds.tobytes())
            self._stdin.write(chunk)
            self._stdin.flush()
        except (OSError, ValueError) as exc:
            raise _WorkerFailed(f"the leaf worker stopped reading ({exc})") from None

    def finish(self, rows: int) -> tuple[Path, bytes]:
        """Wait for the worker; its leaves file and tile roots, once it has hashed exactly ``rows`` events."""
        try:
            out, err = self.process.communicate(timeout=_WORKER_WAIT)
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            raise _WorkerFailed(f"the leaf worker did not finish ({type(exc).__name__})") from None
        if self.process.returncode != 0:
            raise _WorkerFailed(f"the leaf worker failed (exit {self.process.returncode}): {err.decode(errors='replace').strip()[-300:]}")
        try:
            counts = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise _WorkerFailed("the leaf worker printed no counts") from None
        if counts.get("rows") != rows:
            raise _WorkerFailed(f"the leaf worker hashed {counts.get('rows')} events, the export wrote {rows}")
        roots = (self.folder / ROOTS).read_bytes()
        if len(roots) != HASH_SIZE * counts.get("tiles", -1):
            raise _WorkerFailed("the leaf worker's tile roots are incomplete")
        return self.folder / LEAVES, roots

    def discard(self) -> None:
        self._discard()


class LogAppender:
    """Leaf hashes of one day as the NDJSON writer produces them; :meth:`seal` appends them once the day is published.

    The hashing runs in a :mod:`.leaf_worker` process beside the export (``worker=False``: on the
    NDJSON thread).  Should the worker fail, :meth:`seal` hashes the day's published NDJSON instead,
    checked against the events' SHA-256 of the manifest: the log is the same either way.
    """

    def __init__(
        self,
        store: ObjectStore,
        day: dt.date,
        signer: Signer | None,
        lock: Callable[[], AbstractContextManager[Any]] | None = None,
        *,
        worker: bool = True,
        timestamp_url: str | None = None,
        timestamp_ca_file: Path | None = None,
    ) -> None:
        """``timestamp_url``: an RFC 3161 TSA that timestamps each checkpoint (``timestamp_ca_file``: its roots, to check the reply)."""
        self.store = store
        self.timestamp_url = timestamp_url
        self.timestamp_ca_file = timestamp_ca_file
        self.day = day
        self.signer = signer
        self._lock = lock or (lambda: local_log_lock(store))
        self._use_worker = worker
        self._worker: _Worker | None = None
        #: Why the worker was given up (None: it was not); the published NDJSON is hashed instead.
        self.worker_failure: str | None = None
        #: In-process hashing (``worker=False``): 32 bytes per event on disk, not in memory.
        self._spool: BinaryIO | None = None
        self.rows = 0

    def _guess_skip(self) -> int:
        """Leaves that complete the log's right-edge tile as it is now (the worker's tile roots start after them).

        Only a guess: another day may be appended before this one; :meth:`_append` uses the roots
        only if the tiles line up with where the day lands."""
        try:
            return -read_head(self.store).size % TILE_WIDTH
        except Exception:  # an unreadable head now is reported by seal; the roots are then merely unused
            return 0

    def observe(self, chunk: memoryview | bytes, offsets: np.ndarray | list[int]) -> None:
        """Hand an NDJSON chunk to the worker (on the writer's NDJSON thread), or hash it here."""
        lines = len(offsets) - 1
        if self._use_worker and self._worker is None and self.worker_failure is None and not self.rows:
            try:
                self._worker = _Worker(self._guess_skip())
            except _WorkerFailed as exc:
                self.worker_failure = str(exc)
        if self._worker is not None:
            try:
                self._worker.send(chunk, offsets)
            except _WorkerFailed as exc:
                self._give_up(str(exc))
        elif not self._use_worker:
            if self._spool is None:
                self._spool = tempfile.TemporaryFile(prefix="audit-tlog-")  # noqa: SIM115 - closed by seal/close
            self._spool.write(leaf_hashes(chunk, offsets))
        self.rows += lines

    def _give_up(self, why: str) -> None:
        self.worker_failure = why
        if self._worker is not None:
            self._worker.discard()
            self._worker = None

    def close(self) -> None:
        if self._worker is not None:
            self._worker.discard()
            self._worker = None
        if self._spool is not None:
            self._spool.close()

    def _leaves(self, events_sha256: str) -> tuple[BinaryIO, tuple[int, bytes] | None]:
        """The day's leaf hashes (a file at its start) and, from the worker, ``(skip, tile roots)``."""
        if self._worker is not None:
            try:
                path, roots = self._worker.finish(self.rows)
                return open(path, "rb"), (self._worker.skip, roots)
            except _WorkerFailed as exc:
                self._give_up(str(exc))
        if self._spool is not None:
            self._spool.seek(0)
            return self._spool, None
        if not self.rows:
            return io.BytesIO(), None
        logger.warning("%s; hashing the published NDJSON of %s for the transparency log instead", self.worker_failure, self.day)
        return self._hash_published(events_sha256), None

    def _hash_published(self, events_sha256: str) -> BinaryIO:
        """The leaf hashes of the day's published NDJSON, streamed, if it holds exactly the sealed events."""
        raw = read_optional(self.store, manifest_key(self.day))
        entry = Manifest.from_bytes(raw).object_for("ndjson") if raw is not None else None
        if entry is None:
            raise IntegrityError(f"{self.day} has no NDJSON in its manifest to hash for the log ({self.worker_failure}); export the day again")
        spool = tempfile.TemporaryFile(prefix="audit-tlog-")  # noqa: SIM115 - returned, closed by _append
        events = hashlib.sha256()
        rows = 0
        with self.store.open(entry.key) as handle, open_text_reader(handle, entry.key) as text:
            for chunk in ndjson_chunks(text):
                events.update(chunk)
                offsets = line_offsets(chunk)
                spool.write(leaf_hashes(chunk, offsets))
                rows += len(offsets) - 1
        if events.hexdigest() != events_sha256 or rows != self.rows:
            spool.close()
            raise IntegrityError(f"{entry.key} no longer holds the {self.rows} events sealed for {self.day}; nothing was appended to the log")
        spool.seek(0)
        return spool

    def _sign(self, origin: str, size: int, root: bytes) -> str:
        """Signed with the manifests' Ed25519 key; without one the note is bare text (``verify-proof`` refuses it)."""
        if self.signer is not None and self.signer.algorithm == "ed25519":
            from audit_pipeline.integrity.checkpoint import sign_checkpoint  # loads cryptography, as the signer did

            return sign_checkpoint(origin, size, root, self.signer)  # type: ignore[arg-type]
        return checkpoint_text(origin, size, root)

    def _timestamp(self, note: str) -> bytes | None:
        """The TSA's reply over the note (checked against ``timestamp_ca_file`` when given), or None when off."""
        if not self.timestamp_url:
            return None
        try:
            roots = load_certificates(self.timestamp_ca_file) if self.timestamp_ca_file else None
            token, _ = request_token(self.timestamp_url, note.encode("utf-8"), roots)
        except TimestampError as exc:
            raise IntegrityError(f"{exc}; the log was not extended with {self.day} (its export is published; export it again to append it)") from None
        return token

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
        leaves, worked = self._leaves(events_sha256)
        # The worker's tile roots are of the tiles starting ``skip`` leaves into the day: usable if the day lands there.
        known = ((first + worked[0]) // TILE_WIDTH, worked[1]) if worked is not None and (first + worked[0]) % TILE_WIDTH == 0 else None
        with leaves, ThreadPoolExecutor(max_workers=_PUBLISHERS, thread_name_prefix="tlog") as pool:
            pending: list[Future[None]] = []

            def publish(key: str, data: bytes) -> None:
                pending.append(pool.submit(self.store.put_bytes, key, data, TILE_TYPE))
                if len(pending) >= 4 * _PUBLISHERS:  # bounded: at most a few tiles in memory
                    for job in pending:
                        job.result()
                    pending.clear()

            writer = TileWriter(reader, publish, known)  # the right-edge tiles come from the reader's cache
            try:
                while block := leaves.read(_SPOOL_BLOCK):
                    writer.append(block)
            except ValueError as exc:  # the worker's tile roots disagree with its leaves: a fault, never a guess
                raise IntegrityError(f"the leaf worker's hashes of {self.day} are inconsistent ({exc}); nothing was appended, export the day again") from None
            root = writer.finish()
            for job in pending:
                job.result()
        if writer.size - first != self.rows:
            raise IntegrityError(f"the log received {writer.size - first} leaf hashes for the {self.rows} events of {self.day}; nothing was appended")
        note = self._sign(origin, writer.size, root)
        token = self._timestamp(note)  # before any checkpoint is written: a refused timestamp appends nothing
        replaced = (
            [*record.replaced, {"first": record.first, "size": record.size, "rows": record.rows, "events_sha256": record.events_sha256}] if record else []
        )
        new = DayRecord(
            day=self.day.isoformat(), first=first, size=writer.size, rows=self.rows, events_sha256=events_sha256, checkpoint=note, replaced=replaced
        )
        if token is not None:
            self.store.put_bytes(token_key(day_checkpoint_key(self.day)), token, TOKEN_TYPE)
        self.store.put_bytes(day_checkpoint_key(self.day), note.encode("utf-8"), NOTE_TYPE)
        self.store.put_bytes(day_record_key(self.day), new.to_bytes(), "application/json")
        if token is not None:
            self.store.put_bytes(token_key(CHECKPOINT_KEY), token, TOKEN_TYPE)
        self.store.put_bytes(CHECKPOINT_KEY, note.encode("utf-8"), NOTE_TYPE)  # last: the log grows only once all is written
        return f"log: {self.day} appended as entries {first}..{writer.size - 1}, checkpoint {writer.size} ({CHECKPOINT_KEY})"


# -- proofs ---------------------------------------------------------------------------------------
def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in hashes]


def _token_for(store: ObjectStore, key: str, note: str) -> bytes | None:
    """The RFC 3161 reply stored beside checkpoint ``key``, if that checkpoint is still ``note``."""
    token = read_optional(store, token_key(key))
    if token is None or read_optional(store, key) != note.encode("utf-8"):
        return None
    return token


#: The first leaf the log still serves once retention pruned it (:mod:`.log_prune`).
MINIMUM_KEY = f"{LOG_PREFIX}/minimum-index"


def minimum_index(store: ObjectStore) -> int:
    """The first leaf the log still serves (0: nothing pruned)."""
    raw = read_optional(store, MINIMUM_KEY)
    if raw is None:
        return 0
    try:
        return int(json.loads(raw)["minimum_index"])
    except (ValueError, KeyError, TypeError):
        return 0  # unreadable: treated as unpruned, so nothing more is deleted on its account


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
        bundle = {
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
        for member, key, note in (("checkpoint", day_checkpoint_key(candidate), record.checkpoint), ("latest_checkpoint", CHECKPOINT_KEY, head.note)):
            token = _token_for(store, key, note)
            if token is not None:
                bundle[f"{member}_timestamp"] = base64.b64encode(token).decode("ascii")
        return bundle
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
    floor = minimum_index(store)
    if old.size < floor:
        raise IntegrityError(
            f"the checkpoint of {old.size} entries is before the log's minimum index {floor} (pruned with retention): "
            "it stays valid, but no proof from it can be computed any more"
        )
    try:
        path = consistency_path(TileReader(store, LOG_PREFIX, head.size), old.size, head.size)
    except TileError as exc:
        raise IntegrityError(f"cannot prove consistency: {exc}") from None
    return {"format": CONSISTENCY_FORMAT, "old_checkpoint": old_note, "checkpoint": head.note, "consistency_path": _b64(path)}
