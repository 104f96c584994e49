"""One retention run: plan, then (unless it is a dry run or a legal hold) delete in a safe order.

Order: database rows first (they are checked against exports that may themselves be due
today), then export objects, then Elasticsearch indices.  Every step is idempotent: a run
that crashed or failed half-way is simply run again, and it continues from what is left
(rows by exported id, objects and indices by name, all of which may already be gone).
Two runs at once do no harm for the same reason; the Dagster job still runs in its own
pool, one at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from audit_pipeline.config.settings import Settings
from audit_pipeline.core.layout import FORMATS
from audit_pipeline.integrity.log_prune import prune_to_exports
from audit_pipeline.integrity.signing import load_signer
from audit_pipeline.retention.clock import database_now, retention_day
from audit_pipeline.retention.database import RetentionDatabase
from audit_pipeline.retention.elasticsearch import DailyIndex, IndexRetention, elasticsearch_sink
from audit_pipeline.retention.export_objects import ExportObject, exported_ids, retire_objects
from audit_pipeline.retention.plan import DatabaseDay, Figures, RetentionPlan, build_plan
from audit_pipeline.retention.policy import retention_policy
from audit_pipeline.retention.record import RetentionRecord, read_record, write_record
from audit_pipeline.storage.object_store import ObjectStore

LEGAL_HOLD_MESSAGE = "retention.legal_hold is true: nothing is deleted (database rows, exports and Elasticsearch indices are all kept)"


@dataclass
class RetentionResult:
    """What a run did (or, for a dry run, would do)."""

    plan: RetentionPlan | None
    dry_run: bool
    legal_hold: bool = False
    #: Rows actually deleted per day (a real run).
    rows_deleted: dict[dt.date, int] = field(default_factory=dict)
    objects_deleted: list[ExportObject] = field(default_factory=list)
    indices_deleted: list[DailyIndex] = field(default_factory=list)
    summaries_deleted: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def figures(self) -> Figures:
        if self.plan is None:
            return Figures(0, 0, 0, 0, dict.fromkeys(FORMATS, 0), 0, 0)
        if self.dry_run:
            return self.plan.figures()
        kept = self.plan.days_kept
        return Figures(
            sum(1 for rows in self.rows_deleted.values() if rows),
            sum(self.rows_deleted.values()),
            len(kept),
            sum(d.rows for d in kept),
            {fmt: sum(1 for o in self.objects_deleted if o.format == fmt) for fmt in FORMATS},
            len(self.indices_deleted),
            sum(i.docs for i in self.indices_deleted),
            len(self.summaries_deleted),
        )


def run_retention(
    settings: Settings,
    *,
    today: dt.date | None = None,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda _: None,
    warn: Callable[[str], None] = lambda _: None,
    clock: Callable[[], dt.datetime] | None = None,
    today_option: str = "--today",
) -> RetentionResult:
    """Apply (or, with ``dry_run``, only plan) the ``retention:`` policy as of ``today``.

    ``today`` defaults to the source database's date and may only be earlier than it
    (``today_option`` names the setting in the error); see :mod:`.clock`.
    """
    now = clock or (lambda: dt.datetime.now(dt.UTC))
    policy = retention_policy(settings)
    if policy.legal_hold:
        warn(LEGAL_HOLD_MESSAGE)
        return RetentionResult(None, dry_run, legal_hold=True, warnings=[LEGAL_HOLD_MESSAGE])
    if not policy.deletes_anything:
        log("retention: every policy is unlimited; nothing to do")
        return RetentionResult(None, dry_run)
    day = retention_day(today, database_now(settings, policy), now(), today_option)
    for message in day.warnings:
        warn(message)
    today = day.today
    store = ObjectStore.from_settings(settings.export)
    log(f"retention as of {today}: {policy.describe()}")
    plan = build_plan(settings, policy, store, today, deleting=not dry_run, log=log)
    result = RetentionResult(plan, dry_run, warnings=[*day.warnings, *plan.warnings])
    for message in plan.warnings:
        warn(message)
    if dry_run:
        return result
    stamp = lambda: now().astimezone(dt.UTC).isoformat(timespec="seconds")  # noqa: E731
    if plan.days_to_delete:
        _delete_rows(settings, store, plan, result, stamp, log, warn)
    if plan.objects or plan.summaries:
        _delete_objects(settings, store, plan, result, log)
    if plan.indices:
        _delete_indices(settings, plan, result, log)
    return result


def _delete_rows(
    settings: Settings,
    store: ObjectStore,
    plan: RetentionPlan,
    result: RetentionResult,
    stamp: Callable[[], str],
    log: Callable[[str], None],
    warn: Callable[[str], None],
) -> None:
    policy = plan.policy
    assert policy.database_url is not None
    with RetentionDatabase(policy.database_url, settings.source.table) as database:
        for entry in plan.days_to_delete:
            deleted = _delete_day(database, store, entry, str(policy.database), policy.batch_rows, stamp)
            result.rows_deleted[entry.day] = deleted
            left = database.rows_of_day(entry.day)
            log(f"database: {entry.day}: deleted {deleted:,} rows (planned {entry.rows:,})")
            if left:
                message = f"database: {entry.day}: {left:,} rows are not in its export (added after it was exported?) and were kept"
                result.warnings.append(message)
                warn(message)


def _delete_day(database: RetentionDatabase, store: ObjectStore, entry: DatabaseDay, policy: str, batch_rows: int, stamp: Callable[[], str]) -> int:
    evidence = entry.evidence
    assert evidence is not None and evidence.id_object is not None and evidence.exported_rows is not None
    # The record goes first: from now on a backfill of this day is refused (see record.py).
    existing = read_record(store, entry.day)
    record = (
        existing
        if existing is not None and existing.status == "deleting"
        else RetentionRecord(
            day=entry.day,
            status="deleting",
            rows_at_start=entry.rows,
            exported_rows=evidence.exported_rows,
            exported_object=evidence.id_object.key,
            manifest_sha256=evidence.manifest_sha256,
            policy=policy,
            started_at=stamp(),
        )
    )
    write_record(store, record)
    deleted = database.delete_ids(entry.day, exported_ids(store, evidence.id_object, batch_rows, evidence.csv_options))
    write_record(store, replace(record, status="deleted", finished_at=stamp()))
    return deleted


def _delete_objects(settings: Settings, store: ObjectStore, plan: RetentionPlan, result: RetentionResult, log: Callable[[str], None]) -> None:
    integrity = settings.integrity
    signer = load_signer(integrity) if integrity.enabled else None
    by_day: dict[dt.date, list[ExportObject]] = {}
    for obj in plan.objects:
        by_day.setdefault(obj.day, []).append(obj)
    for day, objects in sorted(by_day.items()):
        formats = sorted({o.format for o in objects}, key=FORMATS.index)
        reason = "retention: " + ", ".join(f"{fmt} {plan.policy.exports[fmt]} (kept from {plan.cutoffs[fmt]})" for fmt in formats)
        retire_objects(store, day, [o.key for o in objects], reason, integrity, signer, plan.verified.get(day))
        result.objects_deleted.extend(objects)
        log(f"exports: {day}: deleted {', '.join(o.key for o in objects)}")
    if by_day and integrity.enabled and integrity.transparency_log:  # the log's leaf tiles of days whose NDJSON is gone
        pruned = prune_to_exports(store)
        if pruned:
            log(pruned)
    # After the objects: a crash in between leaves a summary whose day has no exports, due again next run.
    for key in plan.summaries:
        store.delete(key)
        result.summaries_deleted.append(key)
        log(f"summaries: deleted {key} (its day's exports are gone)")


def _delete_indices(settings: Settings, plan: RetentionPlan, result: RetentionResult, log: Callable[[str], None]) -> None:
    indices = IndexRetention(elasticsearch_sink(settings))
    try:
        for index in plan.indices:
            gone = indices.delete(index)
            result.indices_deleted.append(index)
            log(f"elasticsearch: deleted index {index.name} ({index.docs:,} documents)" if gone else f"elasticsearch: {index.name} was already gone")
    finally:
        indices.close()
