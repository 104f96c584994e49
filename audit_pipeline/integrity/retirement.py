"""Retirement records: how retention says "this day's objects were deleted on purpose".

Retention keeps every manifest (they are small) and, *before* deleting a day's data objects,
writes ``manifests/retired/date=YYYY-MM-DD.json`` naming the objects it deletes, the day's
manifest SHA-256 and last chain hash.  Verify then reports the day as RETIRED instead of
"object missing", still checks the manifest and its links, and can link the next day to
the record even if the manifest itself was later removed.  A crash between the record and
the deletions leaves objects that are still verified as usual.

A record is written only for a day that verified (retention checks it first, see
``audit_pipeline.retention.export_objects.retire_objects``): written for a tampered day, it
would turn a FAILED day into a RETIRED one and erase the evidence with the objects.
"""

from __future__ import annotations

import datetime as dt
from typing import Final, Literal

from audit_pipeline.core.errors import AuditPipelineError
from audit_pipeline.core.layout import manifest_key
from audit_pipeline.core.layout import retirement_key as retirement_key
from audit_pipeline.integrity.manifest import CONTENT_TYPE, Hex64, Manifest, ManifestError, SignedDocument, parse_document, read_optional, sha256_hex
from audit_pipeline.integrity.signer import Signer
from audit_pipeline.storage.object_store import ObjectStore

RETIREMENT_FORMAT: Final = "audit_pipeline.retirement/1"


class Retirement(SignedDocument):
    format: Literal["audit_pipeline.retirement/1"] = RETIREMENT_FORMAT
    day: dt.date
    manifest_sha256: Hex64
    last_hash: Hex64
    rows: int
    #: Keys of the data objects retention deletes (or deleted).
    deleted: tuple[str, ...]
    reason: str
    at: str

    @classmethod
    def from_bytes(cls, data: bytes) -> Retirement:
        return parse_document(cls, data)  # type: ignore[no-any-return]


def read_retirement(store: ObjectStore, day: dt.date) -> Retirement | None:
    raw = read_optional(store, retirement_key(day))
    return Retirement.from_bytes(raw) if raw is not None else None


def record_retirement(
    store: ObjectStore, day: dt.date, deleted_keys: list[str], reason: str, signer: Signer | None, now: dt.datetime | None = None
) -> Retirement:
    """Write the retirement record of ``day``; call it *before* deleting the objects it names, and only once the day verified."""
    key = manifest_key(day)
    raw = read_optional(store, key)
    if raw is None:
        raise AuditPipelineError(f"{day} has no manifest ({key}); export it (or keep its objects) before retiring it")
    try:
        manifest = Manifest.from_bytes(raw)
    except ManifestError as exc:
        raise AuditPipelineError(f"{key} is unreadable ({exc}); run `audit-pipeline verify --from {day} --to {day}` before retiring the day") from None
    unknown = sorted(set(deleted_keys) - {o.key for o in manifest.objects})
    if unknown:
        raise AuditPipelineError(f"retiring {day}: {', '.join(unknown)} are not objects of its manifest")
    record = Retirement(
        day=day,
        manifest_sha256=sha256_hex(raw),
        last_hash=manifest.chain.last_hash,
        rows=manifest.rows,
        deleted=tuple(sorted(deleted_keys)),
        reason=reason,
        at=(now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
    )
    if signer is not None:
        record = record.model_copy(update={"signature": signer.sign(record)})
    store.put_bytes(retirement_key(day), record.to_bytes(), CONTENT_TYPE)
    return record
