"""``verify``'s check of the transparency log: every daily checkpoint signed, each one extended by the next.

The daily checkpoints (``tlog/checkpoints/date=…``) are taken in the order the log grew (tree
size), with the newest (``tlog/checkpoint``) last.  For each consecutive pair the consistency
proof computed from the tiles must verify (RFC 9162 §2.1.4.2), so the log only ever grew by
appending: a rewritten event, a forked history or tiles replaced by another tree fail here.
A tree size that shrinks (``tlog/checkpoint`` smaller than a day's checkpoint: a rollback) and
two different roots for one size (a fork) fail too.  Signatures are checked with the keys
``verify`` trusts for the manifests; an unsigned checkpoint fails where that day's manifest
would have to be signed.

What this cannot see from the store alone: the whole ``tlog/`` folder replaced by an older copy
of itself.  That is what an auditor's held checkpoint is for (``verify-proof --known-checkpoint``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from audit_pipeline.core.layout import PUBLIC_KEY_KEY
from audit_pipeline.integrity.manifest import read_optional
from audit_pipeline.integrity.merkle import consistency_path, tree_root
from audit_pipeline.integrity.proofs import CHECKPOINT_KEY, CHECKPOINTS_PREFIX, LOG_PREFIX, LogHead, day_checkpoint_key, minimum_index, parse_note
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.integrity.tiles import TileError, TileReader
from audit_pipeline.integrity.timestamps import Stamp, TimestampError, check_token, load_certificates, token_key
from audit_pipeline.storage.object_store import ObjectStore

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["LogCheck", "check_log"]


@dataclass
class LogCheck:
    """What ``verify`` prints about the log: notes when all is well, one line per problem otherwise."""

    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _Point:
    label: str
    day: dt.date | None
    head: LogHead


def _checkpoint_days(store: ObjectStore) -> list[dt.date]:
    days: list[dt.date] = []
    for key in store.list(CHECKPOINTS_PREFIX):
        name = key.rsplit("/", 1)[-1]
        if name.startswith("date="):
            with contextlib.suppress(ValueError):
                days.append(dt.date.fromisoformat(name[5:]))
    return sorted(days)


def _trusted_keys(store: ObjectStore, keyring: Keyring) -> tuple[list[Ed25519PublicKey], str]:
    """The keys checkpoints must be signed with: the pinned ones, else the key the store publishes (weaker)."""
    if keyring.pinned:
        return list(keyring.pinned.values()), "a trusted key"
    raw = read_optional(store, PUBLIC_KEY_KEY)
    if raw is None:
        return [], "no key"
    from audit_pipeline.integrity.proof_verify import ProofError, load_public_key  # cryptography: only where a key is

    try:
        return [load_public_key(raw)], f"the key the store publishes ({PUBLIC_KEY_KEY})"
    except ProofError:
        return [], "no key"


class _Checker:
    def __init__(self, store: ObjectStore, keyring: Keyring, tsa_ca_file: Path | None = None, timestamp_required: bool = False) -> None:
        self.store = store
        self.keyring = keyring
        self.tsa_ca_file = tsa_ca_file
        self.timestamp_required = timestamp_required
        self.stamped = self.stamps_unchecked = 0
        self.newest_stamp: Stamp | None = None
        self.keys, self.signed_with = _trusted_keys(store, keyring)
        self.result = LogCheck()
        self.unsigned = 0

    def problem(self, message: str) -> None:
        self.result.problems.append(message)

    def point(self, label: str, key: str, day: dt.date | None) -> _Point | None:
        """The checkpoint at ``key``, its signature and RFC 3161 timestamp checked; None (and a problem) when it is unusable."""
        found = self._signed_point(label, key, day)
        if found is None or found.head.note is None:
            return found
        token = read_optional(self.store, token_key(key))
        if token is None:
            if self.timestamp_required and day is None:
                self.problem(f"{label} ({key}) has no RFC 3161 timestamp ({token_key(key)}), but integrity.timestamp_url is set")
            return found
        if self.tsa_ca_file is None:
            self.stamps_unchecked += 1
            return found
        try:
            stamp = check_token(token, found.head.note.encode("utf-8"), load_certificates(self.tsa_ca_file))
        except TimestampError as exc:
            self.problem(f"{label}: {token_key(key)}: {exc}")
            return None
        self.stamped += 1
        if day is None:
            self.newest_stamp = stamp
        return found

    def _signed_point(self, label: str, key: str, day: dt.date | None) -> _Point | None:
        """The checkpoint at ``key``, its signature checked; None (and a problem) when it is unusable."""
        raw = read_optional(self.store, key)
        if raw is None:
            return None
        note = raw.decode("utf-8", errors="replace")
        try:
            head = parse_note(note)
        except Exception as exc:  # IntegrityError with its own sentence
            self.problem(f"{label} ({key}) is not a checkpoint: {exc}")
            return None
        if "\n\n" not in note:  # a bare note: signed notes need an Ed25519 key (HMAC cannot sign one)
            why = self.keyring.signature_required(self.store, day) if self.keys else None
            if why is not None:
                self.problem(f"{label} ({key}) is not signed, but must be: {why}")
                return None
            self.unsigned += 1
            return _Point(label, day, head)
        from audit_pipeline.integrity.proof_verify import ProofError, verify_checkpoint  # cryptography: signed notes only

        errors: list[str] = []
        for public_key in self.keys:
            try:
                verify_checkpoint(note, public_key)
                return _Point(label, day, head)
            except ProofError as exc:
                errors.append(str(exc))
        if not self.keys:
            if self.keyring.signature_required(self.store, day) is not None:
                self.problem(f"{label} ({key}) cannot be checked: no Ed25519 public key is trusted or published; give --public-key")
                return None
            self.unsigned += 1  # signed, but with nothing to check it against: counted as unchecked
            return _Point(label, day, head)
        self.problem(f"{label} ({key}) is not signed by {self.signed_with}: {errors[0]}")
        return None

    def run(self) -> LogCheck | None:
        days = _checkpoint_days(self.store)
        latest = self.point("the newest checkpoint", CHECKPOINT_KEY, None)
        if latest is None and not days and not self.result.problems:
            return None  # no log in this store (integrity.transparency_log off, or nothing sealed since it exists)
        points = [p for p in (self.point(f"the checkpoint of {d}", day_checkpoint_key(d), d) for d in days) if p is not None]
        if latest is None and not self.result.problems:
            self.problem(f"{CHECKPOINT_KEY} is missing but {len(days)} daily checkpoints exist: the log was rolled back or truncated")
        origins = {p.head.origin for p in [*points, *([latest] if latest else [])]}
        if len(origins) > 1:
            self.problem(f"the checkpoints name {len(origins)} different logs ({', '.join(sorted(str(o) for o in origins))}): the log was forked or mixed")
            return self.result
        points.sort(key=lambda p: p.head.size)
        floor = minimum_index(self.store)
        pruned = [p for p in points if 0 < p.head.size < floor]
        if pruned:  # their leaf tiles were pruned with retention: signed and valid, but no proof from them can be computed
            points = [p for p in points if not 0 < p.head.size < floor]
            self.result.notes.append(f"log: {len(pruned)} checkpoints before the minimum index {floor} (pruned with retention) checked for signatures only")
        if latest is not None:
            bigger = [p for p in points if p.head.size > latest.head.size]
            if bigger:
                self.problem(f"the log was rolled back: {CHECKPOINT_KEY} has {latest.head.size} entries but {bigger[-1].label} has {bigger[-1].head.size}")
                return self.result
            points.append(latest)
        self._chain(points)
        if self.result.ok:
            signed = f"signed with {self.signed_with}" if not self.unsigned else f"{self.unsigned} unsigned or unchecked"
            self.result.notes.append(
                f"log: {len(days)} daily checkpoints, each extended by the next, tree of {points[-1].head.size if points else 0} entries ({signed})"
            )
            if self.stamped:
                newest = f"; the newest at {self.newest_stamp.time.isoformat()}" if self.newest_stamp else ""
                self.result.notes.append(f"log: {self.stamped} RFC 3161 timestamps verify{newest}")
            if self.stamps_unchecked:
                self.result.notes.append(f"log: {self.stamps_unchecked} RFC 3161 timestamps not checked (set integrity.timestamp_ca_file)")
        return self.result

    def _chain(self, points: list[_Point]) -> None:
        """Each checkpoint against the next: same root at the same size, else a consistency proof from the tiles."""
        if not points:
            return
        size = points[-1].head.size
        reader = TileReader(self.store, LOG_PREFIX, size)
        try:
            if tree_root(reader, size) != points[-1].head.root:
                self.problem(f"the tiles do not lead to the root of {points[-1].label} ({size} entries): the tiles were changed")
                return
        except TileError as exc:
            self.problem(f"the tiles cannot be read up to {size} entries: {exc}")
            return
        from audit_pipeline.integrity.proof_verify import ProofError, verify_consistency  # (hashlib; loads cryptography too)

        for old, new in itertools.pairwise(points):
            if old.head.size == 0:
                continue
            if old.head.size == new.head.size:
                if old.head.root != new.head.root:
                    self.problem(f"the log was forked: {old.label} and {new.label} both have {old.head.size} entries but different roots")
                continue
            try:
                path = consistency_path(reader, old.head.size, new.head.size)
                verify_consistency(old.head.size, new.head.size, path, old.head.root or b"", new.head.root or b"")
            except (ProofError, TileError) as exc:
                self.problem(f"{new.label} ({new.head.size} entries) does not extend {old.label} ({old.head.size} entries): {exc}")


def check_log(store: ObjectStore, keyring: Keyring, tsa_ca_file: Path | None = None, timestamp_required: bool = False) -> LogCheck | None:
    """The log's checkpoints, their consistency and timestamps; None when the store has no transparency log.

    ``tsa_ca_file``: the TSA's roots, to check the stored RFC 3161 replies; ``timestamp_required``: the
    newest checkpoint must have one (``integrity.timestamp_url`` is set)."""
    return _Checker(store, keyring, tsa_ca_file, timestamp_required).run()
