"""The head: ``manifests/head.json`` names the newest sealed day, so the newest days cannot vanish quietly.

Every export (and every re-link) rewrites the head after its manifest: the newest day in the
store, the SHA-256 of that day's manifest, a ``counter`` that grows with every update, and
``signed_from``, the first signed day.  Signed with the export's key, it lets ``verify``
without ``--to`` notice that the newest days were deleted (the head names a later day than
the last manifest) or that their manifests were replaced.

A head can still be *replayed*: an older, validly signed head put back after deleting the
days it does not name.  Only something outside the store can notice that, so the export
also records the highest head it wrote in the state database (:class:`HeadWitness`, when
``state_url`` is set): when the newest day the exports sealed is no longer in the store,
the head was rolled back (or removed) and the days after it deleted.  Exports running side
by side may write their heads in any order, so a head merely behind the witness is not
evidence by itself.

The witness is kept under two names: the store's URL, and the store's *genesis*, the SHA-256
of its earliest manifest (:func:`store_identity`).  The genesis travels with the store: a
store copied or moved to another bucket or folder is still recognised, so a head rolled back
in the copy is caught when the copy is verified under its new URL.  Witnesses recorded under
the URL alone (before this) are still read, and copied to the genesis name the first time
they are read.  Two stores whose first manifests are byte for byte the same (the same events
exported with the same settings) share the genesis name, and so their witness.

Unsigned stores get an unsigned head: it shows which day was newest, but whoever can write
the store can rewrite it, so tail truncation is only detectable with a signature.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field

import sqlalchemy as sa

from audit_pipeline.config.settings import Settings
from audit_pipeline.core.errors import AuditPipelineError, first_line
from audit_pipeline.core.layout import HEAD_KEY, MANIFEST_PREFIX, day_of_manifest_key, manifest_key
from audit_pipeline.integrity.manifest import CONTENT_TYPE, Head, ManifestError, read_optional, sha256_hex
from audit_pipeline.integrity.signer import Signer
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.storage.object_store import ObjectStore

_metadata = sa.MetaData()
witness_table = sa.Table(
    "audit_pipeline_head_witness",
    _metadata,
    sa.Column("store", sa.String(1000), primary_key=True),
    sa.Column("counter", sa.BigInteger, nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("manifest_sha256", sa.String(64), nullable=False),
)


@dataclass(frozen=True)
class Seen:
    counter: int
    day: dt.date
    manifest_sha256: str


def store_identity(store: ObjectStore) -> str | None:
    """A name for the store that stays with its contents: ``genesis:`` and the SHA-256 of its earliest manifest.

    Not the URL, which changes when the store is copied or moved.  The earliest manifest is
    the chain's start: retention keeps every manifest, and a day's manifest changes only
    when that day is re-sealed (then the URL name still holds the witness until the next
    export records it under the new genesis too).
    """
    days = [d for d in (day_of_manifest_key(k) for k in store.list(MANIFEST_PREFIX)) if d is not None]
    if not days:
        return None
    raw = read_optional(store, manifest_key(min(days)))
    return f"genesis:{sha256_hex(raw)}" if raw is not None else None


def _names(store: ObjectStore) -> list[str]:
    """The witness's names for ``store``: its URL (as before), then its genesis when it has one."""
    identity = store_identity(store)
    return [store.uri("")] + ([identity] if identity is not None else [])


def _highest(first: Seen, second: Seen) -> Seen:
    """The higher of two witnessed heads: exports side by side may write theirs in any order, so keep the highest of each."""
    newer = second.day > first.day or (second.day == first.day and second.counter >= first.counter)
    return Seen(max(first.counter, second.counter), *((second.day, second.manifest_sha256) if newer else (first.day, first.manifest_sha256)))


class HeadWitness:
    """The highest head counter the exports wrote for each store, in the state database."""

    def __init__(self, url: str) -> None:
        try:
            self.engine = sa.create_engine(url)
            _metadata.create_all(self.engine, checkfirst=True)
        except sa.exc.SQLAlchemyError as exc:
            raise _unreachable(exc) from None

    def seen(self, store: ObjectStore) -> Seen | None:
        """The highest head recorded under any of the store's names; a witness found under the URL alone is also
        recorded under the genesis, so that a copy of the store made from now on is recognised."""
        names = _names(store)
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(witness_table).where(witness_table.c.store.in_(names))).all()
        except sa.exc.SQLAlchemyError as exc:
            raise _unreachable(exc) from None
        found = {row.store: Seen(int(row.counter), row.day, row.manifest_sha256) for row in rows}
        if not found:
            return None
        highest = functools.reduce(_highest, found.values())
        for name in names:
            if found.get(name) != highest:
                self._raise(name, highest)
        return highest

    def record(self, store: ObjectStore, head: Head) -> None:
        """Remember ``head`` under each of the store's names, unless a higher one is recorded (two exports at once: the higher wins)."""
        for name in _names(store):
            self._raise(name, Seen(head.counter, head.day, head.manifest_sha256))

    def _raise(self, name: str, head: Seen) -> None:
        for _attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    row = conn.execute(sa.select(witness_table).where(witness_table.c.store == name)).first()
                    if row is None:
                        conn.execute(witness_table.insert().values(store=name, counter=head.counter, day=head.day, manifest_sha256=head.manifest_sha256))
                    else:
                        merged = _highest(Seen(int(row.counter), row.day, row.manifest_sha256), head)
                        conn.execute(
                            witness_table.update()
                            .where(witness_table.c.store == name)
                            .values(counter=merged.counter, day=merged.day, manifest_sha256=merged.manifest_sha256)
                        )
                return
            except sa.exc.IntegrityError:
                continue  # another export inserted the row first: compare with it
            except sa.exc.SQLAlchemyError as exc:
                raise _unreachable(exc) from None

    def close(self) -> None:
        self.engine.dispose()


def _unreachable(exc: BaseException) -> AuditPipelineError:
    text = first_line(exc)
    return AuditPipelineError(f"cannot use the state database for the export head witness ({text}); check state_url")


def read_head(store: ObjectStore) -> tuple[Head | None, str | None]:
    """The head and, when it cannot be read, why."""
    raw = read_optional(store, HEAD_KEY)
    if raw is None:
        return None, None
    try:
        return Head.from_bytes(raw), None
    except ManifestError as exc:
        return None, f"{HEAD_KEY} is not a valid head ({exc})"


def newest_manifest_day(store: ObjectStore) -> dt.date | None:
    days = [d for d in (day_of_manifest_key(k) for k in store.list(MANIFEST_PREFIX)) if d is not None]
    return max(days, default=None)


def update_head(store: ObjectStore, signer: Signer | None, keyring: Keyring, witness: HeadWitness | None = None) -> Head | None:
    """Rewrite the head for the store as it is now (after a manifest was published or re-linked)."""
    newest = newest_manifest_day(store)
    if newest is None:
        return None
    raw = read_optional(store, manifest_key(newest))
    if raw is None:
        return None
    old, _ = read_head(store)
    seen = witness.seen(store) if witness is not None else None
    counter = max(old.counter if old is not None else 0, seen.counter if seen is not None else 0) + 1
    keyring.forget(store)
    signed_from = keyring.first_signed_day(store) if signer is not None else None
    if old is not None and old.signed_from is not None and old.signature is not None and keyring.check(old, store).ok:
        signed_from = min(old.signed_from, signed_from) if signed_from is not None else old.signed_from
    if (
        old is not None
        and (old.day, old.manifest_sha256, old.signed_from) == (newest, sha256_hex(raw), signed_from)
        and keyring.check(old, store).ok
        and (old.signature is not None) == (signer is not None)
    ):
        if witness is not None:
            witness.record(store, old)
        return old  # nothing changed: an unchanged re-export leaves every byte in place
    head = Head(day=newest, manifest_sha256=sha256_hex(raw), counter=counter, signed_from=signed_from)
    if signer is not None:
        head = head.model_copy(update={"signature": signer.sign(head)})
    store.put_bytes(HEAD_KEY, head.to_bytes(), CONTENT_TYPE)
    if witness is not None:
        witness.record(store, head)
    return head


@dataclass
class HeadCheck:
    """What the head says about the newest days."""

    head: Head | None
    problems: list[str] = field(default_factory=list)
    #: The head's signature checked out (or it may be unsigned): the day it names can be relied on.
    trusted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_head(store: ObjectStore, keyring: Keyring, newest: dt.date | None, witness: Seen | None = None) -> HeadCheck:
    """Compare the head (and the highest head the exports recorded) with the newest manifest in the store."""
    head, unreadable = read_head(store)
    result = HeadCheck(head)
    if unreadable is not None:
        result.problems.append(f"{unreadable}: it cannot show whether the newest days were deleted")
        return result
    if head is None:
        if witness is not None:
            result.problems.append(
                f"{HEAD_KEY} is missing, but the exports recorded head {witness.counter} naming {witness.day}: the head was removed"
                + (f", and the newest manifest is {newest}" if newest is not None and newest < witness.day else "")
            )
        elif keyring.signature_required(store, None) is not None and newest is not None:
            result.notes.append(f"no {HEAD_KEY} yet: the next signed export writes it (until then, deleted newest days go unnoticed)")
        return result
    check = keyring.check(head, store)
    if head.signature is None and check.ok:
        result.notes.append(f"head: {head.day} (unsigned: deleting the newest days is only detectable with a signature)")
    elif not check.ok:
        result.problems.append(f"{HEAD_KEY} altered or signature invalid: {check.message}")
        return result
    else:
        result.notes.append(f"head: {head.day}, update {head.counter}")
    result.trusted = True
    if newest is None or head.day > newest:
        result.problems.append(f"the head names {head.day}, but the newest manifest is {newest or 'none'}: the newest days were deleted from the store")
    else:
        raw = read_optional(store, manifest_key(head.day))
        if raw is not None and sha256_hex(raw) != head.manifest_sha256 and head.day == newest:
            result.problems.append(
                f"{manifest_key(head.day)} changed after the head was written (SHA-256 {sha256_hex(raw)[:12]}…, the head says {head.manifest_sha256[:12]}…)"
            )
        if head.day < newest:
            result.notes.append(f"manifests up to {newest} are newer than the head (an export did not finish updating it); the next export updates it")
    if witness is not None and (newest is None or witness.day > newest):
        # Exports running side by side may leave a head with a lower counter or day than another wrote; only
        # a day the exports sealed that is no longer in the store is evidence.
        if head.counter < witness.counter:
            result.problems.append(
                f"{HEAD_KEY} was rolled back: it is update {head.counter} naming {head.day}, but the exports wrote update {witness.counter} "
                f"naming {witness.day}, and the newest manifest is {newest or 'none'}: an older head was put back after the newest days were deleted"
            )
        else:
            result.problems.append(
                f"the exports sealed {witness.day}, but the newest manifest is {newest or 'none'}: the newest days were deleted from the store"
            )
    return result


def seen_head(settings: Settings, store: ObjectStore) -> Seen | None:
    """The highest head the exports recorded for ``store`` (None without ``state_url`` or before the first)."""
    if not settings.state_url:
        return None
    witness = HeadWitness(settings.state_url)
    try:
        return witness.seen(store)
    finally:
        witness.close()
