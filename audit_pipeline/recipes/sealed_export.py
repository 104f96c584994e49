"""The one recipe for writing a day into the archive: export (or re-seal) it, or re-link it, under its day lock.

The Dagster asset (and through it ``audit-pipeline export-day`` and ``demo``), ``rechain`` and
``relink`` all change a day's objects or manifest.  Each step of the recipe exists for a reason
the others rely on, so it is assembled here once instead of in every caller:

1. the day lock (:mod:`audit_pipeline.exports.daylock`): one writer of a day at a time on every machine,
   confirmed right before anything is published;
2. the re-export guard (:class:`~audit_pipeline.retention.record.ReexportGuard`): a day whose
   rows retention deleted is not replaced by an emptier copy unless forced;
3. the sealer (:class:`~audit_pipeline.integrity.sealing.DaySealer`): the entry chain, the
   manifest published last, a rechain recorded with its reason;
4. :func:`~audit_pipeline.exports.day.export_day`, then the sealer's ``after_publish``, which links
   the following days and updates the head while the lock is still held.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from audit_pipeline.config.settings import Settings
from audit_pipeline.core.event_filters import daily_export_filter
from audit_pipeline.core.layout import MANIFEST_PREFIX, day_of_manifest_key
from audit_pipeline.exports.day import DayExport, export_day
from audit_pipeline.exports.daylock import DEFAULT_WAIT_SECONDS, day_lock, days_lock
from audit_pipeline.integrity.head import HeadWitness, update_head
from audit_pipeline.integrity.linking import link_forward
from audit_pipeline.integrity.sealing import DaySealer
from audit_pipeline.integrity.signing import Keyring, load_signer
from audit_pipeline.retention.record import ReexportGuard, forced_reexport_reason, read_record
from audit_pipeline.sources.base import AuditSource
from audit_pipeline.storage.object_store import ObjectStore

__all__ = ["RELINK_DAYS_PER_LOCK", "SealedDay", "export_sealed_day", "manifest_days", "relink_days"]


@dataclass(frozen=True)
class SealedDay:
    """What one run of the recipe did: the export, the sealer's one-line summary, where the events came from."""

    export: DayExport
    summary: str
    origin: str


def export_sealed_day(
    settings: Settings,
    store: ObjectStore,
    day: dt.date,
    open_source: Callable[[], AuditSource],
    *,
    force: bool = False,
    rechain_reason: str | None = None,
    warn: Callable[[str], None] | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> SealedDay:
    """Export ``day`` (or, with ``rechain_reason``, re-seal it although its events changed) under its day lock.

    ``open_source`` is called once the lock is held, so that a run waiting for another export of
    the same day holds no source connection.  ``force`` exports a day retention emptied (its rows
    restored); when its events differ, the manifest records that as a rechain.
    """
    with day_lock(settings, day, wait_seconds=wait_seconds) as lock:
        if force and rechain_reason is None:
            retired = read_record(store, day)
            rechain_reason = forced_reexport_reason(retired) if retired else None
        sealer = DaySealer.from_settings(settings, store, day, rechain_reason=rechain_reason)  # entry chain + manifest (integrity section)
        guard = ReexportGuard(store, day, force=force)
        with open_source() as source:
            export = export_day(
                source,
                store,
                day,
                settings.export,
                event_filter=daily_export_filter(settings.export),
                fail_before_publish=lock.confirm,
                guard=guard,
                **sealer.export_hooks(),
            )
            origin = source.description
        summary = sealer.after_publish(warn=warn)
    return SealedDay(export, summary, origin)


def manifest_days(store: ObjectStore) -> list[dt.date]:
    """The days that have a manifest, oldest first."""
    return sorted(d for d in (day_of_manifest_key(k) for k in store.list(MANIFEST_PREFIX)) if d is not None)


#: Days locked at once by ``relink``: each is one advisory lock in PostgreSQL's shared lock table
#: (``max_locks_per_transaction`` x connections slots, 6,400 by default), so a decade is re-linked a year at a time.
RELINK_DAYS_PER_LOCK = 366


def relink_days(settings: Settings, store: ObjectStore, first: dt.date, *, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> list[str]:
    """Re-link ``first`` and every later day to the day before it, holding the locks of the days it may rewrite.

    An export of one of those days running meanwhile would otherwise publish its manifest over
    the re-linked one (or the other way round).  Returns one line per day rewritten.
    """
    days = [d for d in manifest_days(store) if d >= first]
    if not days:
        return []
    config = settings.integrity
    signer = load_signer(config)
    keyring = Keyring.for_signer(signer, config)
    lines: list[str] = []
    for start in range(0, len(days), RELINK_DAYS_PER_LOCK):
        chunk = days[start : start + RELINK_DAYS_PER_LOCK]
        # The day before the first is locked too: its manifest is what the first one links to.
        with days_lock(settings, [chunk[0] - dt.timedelta(days=1), *chunk], wait_seconds=wait_seconds):
            lines += link_forward(store, first if start == 0 else chunk[0], signer, keyring, until=chunk[-1])
    witness = HeadWitness(settings.state_url) if settings.state_url else None
    try:
        with days_lock(settings, [days[-1]], wait_seconds=wait_seconds):  # the head names the newest day: updated as its export would
            update_head(store, signer, keyring, witness)
    finally:
        if witness is not None:
            witness.close()
    return lines
