"""Links between days: what a day's chain continues from, and repairing links after the fact.

A day's seed is the previous day's last hash, taken from the previous day's manifest (or
its retirement record).  When the previous day has no manifest yet, which happens when a
Dagster backfill runs days out of order or side by side, the day is seeded from
:data:`GENESIS` with ``previous: null``.  Once the earlier day is published, its export
calls :func:`link_forward`, which re-hashes each following day from its published objects
(checked against that day's own manifest first) with the right seed and rewrites its
manifest, recording a ``linked``/``relinked`` history entry, until it reaches a day that is
already linked correctly.  The result is deterministic, so two runs doing the same
repair write identical bytes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from audit_pipeline.core.layout import manifest_key, retirement_key
from audit_pipeline.integrity.canonical import CanonicalError, StoredObjectReader
from audit_pipeline.integrity.chain import GENESIS, EntryChain
from audit_pipeline.integrity.errors import IntegrityError
from audit_pipeline.integrity.manifest import CONTENT_TYPE, HistoryEntry, Manifest, ManifestError, PreviousDay, read_optional, sha256_hex
from audit_pipeline.integrity.retirement import read_retirement
from audit_pipeline.integrity.signer import Signer
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.storage.object_store import ObjectStore

#: The order in which a day's objects are tried when its chain must be recomputed.
RECOMPUTE_ORDER = ("ndjson", "parquet", "csv")

ONE_DAY = dt.timedelta(days=1)
#: How often a day is redone because other runs keep replacing the day before it.
MAX_RETRIES = 10


@dataclass(frozen=True)
class LinkTarget:
    """What a day's chain must continue from."""

    seed: bytes
    previous: PreviousDay | None
    #: The reason of the previous day's rechain, when that is the last change to its manifest.
    rechained: str | None = None


def link_change(day: dt.date, old_previous: PreviousDay | None, target: LinkTarget) -> tuple[Literal["linked", "relinked"], str]:
    """History action and reason for re-linking ``day``; they depend only on the manifests, so that
    two runs repairing the same day write the same bytes."""
    if old_previous is None:
        return "linked", f"{day - ONE_DAY} was published after this day was sealed"
    extra = f" (rechained: {target.rechained})" if target.rechained else ""
    return "relinked", f"the manifest of {day - ONE_DAY} changed{extra}"


def link_target(store: ObjectStore, day: dt.date, keyring: Keyring) -> LinkTarget:
    """Seed and link for ``day`` as the store stands now; refuses a previous day that fails its checks."""
    before = day - ONE_DAY
    key = manifest_key(before)
    raw = read_optional(store, key)
    if raw is not None:
        try:
            previous = Manifest.from_bytes(raw)
        except ManifestError as exc:
            raise IntegrityError(f"{key} is unreadable ({exc}); the chain of {day} continues from it. Run `audit-pipeline verify --from {before}`") from None
        check = keyring.check(previous, store)
        if not check.ok:
            raise IntegrityError(
                f"refusing to continue the chain of {day} from {key}: {check.message}. Nothing was published; "
                f"run `audit-pipeline verify --from {before}`, and if {before} is a forgery restore its exports from a trusted copy "
                f"(or re-export it with the key: `audit-pipeline rechain --from {before} --reason ...`)"
            )
        last = previous.history[-1] if previous.history else None
        rechained = last.reason if last is not None and last.action == "rechained" else None
        return LinkTarget(bytes.fromhex(previous.chain.last_hash), PreviousDay(day=before, manifest_sha256=sha256_hex(raw)), rechained)
    try:
        retired = read_retirement(store, before)
    except ManifestError as exc:
        raise IntegrityError(f"{retirement_key(before)} is unreadable ({exc}); run `audit-pipeline verify --from {before}`") from None
    if retired is not None:
        check = keyring.check(retired, store)
        if not check.ok:
            raise IntegrityError(f"refusing to continue the chain of {day} from {retirement_key(before)}: {check.message}")
        return LinkTarget(bytes.fromhex(retired.last_hash), PreviousDay(day=before, manifest_sha256=retired.manifest_sha256))
    return LinkTarget(GENESIS, None)


def recompute_chain(store: ObjectStore, manifest: Manifest, seed: bytes) -> EntryChain:
    """The day's chain from ``seed``, read from the first of its objects that still matches its manifest."""
    reasons = []
    for fmt in RECOMPUTE_ORDER:
        entry = manifest.object_for(fmt)
        if entry is None:
            continue
        if not store.exists(entry.key):
            reasons.append(f"{entry.key} is missing")
            continue
        reader = StoredObjectReader(store, entry.key, fmt, manifest.csv.model_dump())
        chain = EntryChain(seed, manifest.chain.checkpoint_rows)
        try:
            for chunk in reader.chunks():
                chain.update(chunk)
        except CanonicalError as exc:
            reasons.append(f"{entry.key}: {exc}")
            continue
        if reader.sha256 != entry.sha256 or chain.events_sha256 != manifest.chain.events_sha256 or chain.rows != manifest.rows:
            reasons.append(f"{entry.key} does not match the manifest")
            continue
        return chain
    raise IntegrityError(
        f"cannot re-link {manifest.day}: no object of the day still matches its manifest ({'; '.join(reasons) or 'no objects'}). "
        f"Run `audit-pipeline verify --from {manifest.day} --to {manifest.day}`"
    )


def relinked(store: ObjectStore, manifest: Manifest, raw: bytes, target: LinkTarget, signer: Signer | None) -> Manifest:
    """``manifest`` continued from ``target``: chain recomputed only when the seed changed."""
    update: dict[str, object] = {"previous": target.previous, "signature": None}
    if manifest.chain.seed != target.seed.hex():
        chain = recompute_chain(store, manifest, target.seed)
        update["chain"] = manifest.chain.model_copy(update={"seed": target.seed.hex(), "last_hash": chain.last_hash, "checkpoints": tuple(chain.checkpoints)})
    action, reason = link_change(manifest.day, manifest.previous, target)
    entry = HistoryEntry(action=action, reason=reason, replaced_manifest_sha256=sha256_hex(raw))
    update["history"] = (*manifest.history, entry)
    result = Manifest.model_validate(manifest.model_copy(update=update).model_dump())
    if signer is not None:
        result = result.model_copy(update={"signature": signer.sign(result)})
    return result


def link_forward(store: ObjectStore, first: dt.date, signer: Signer | None, keyring: Keyring, until: dt.date | None = None) -> list[str]:
    """Re-link ``first`` (if its previous day appeared meanwhile) and every following day that no longer links.

    Stops at the first following day that already links correctly, or at a gap.  With
    ``until``, every day up to it is checked instead (gaps are skipped).  After rewriting a
    day it checks the previous day again: if another run replaced it meanwhile, the day is
    redone, so that concurrent repairs end linked.  Returns one line per day it rewrote.
    """
    done: list[str] = []
    day = first
    retries = 0
    while True:
        key = manifest_key(day)
        raw = read_optional(store, key)
        if raw is None:
            if until is not None and day < until:
                day += ONE_DAY
                continue
            return done
        try:
            manifest = Manifest.from_bytes(raw)
        except ManifestError as exc:
            raise IntegrityError(f"{key} is unreadable ({exc}); run `audit-pipeline verify --from {day}`") from None
        target = link_target(store, day, keyring)
        linked = manifest.chain.seed == target.seed.hex() and manifest.previous == target.previous
        if not linked and target.previous is not None:
            new = relinked(store, manifest, raw, target, signer)
            store.put_bytes(key, new.to_bytes(), CONTENT_TYPE)
            if link_target(store, day, keyring) != target:  # the previous day changed while this one was re-linked
                retries += 1
                if retries > MAX_RETRIES:
                    raise IntegrityError(f"the manifest of {day - ONE_DAY} keeps changing; run `audit-pipeline relink --from {day}` once the exports are done")
                continue
            done.append(f"{day}: {new.history[-1].action} to {day - ONE_DAY}")
        elif day > first and (until is None or day >= until):
            return done
        day += ONE_DAY
