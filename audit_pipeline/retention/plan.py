"""What retention would delete today, and why each day past the policy is deleted or kept.

The plan is the dry run: it reads (the database's rows per day, the export store, sink
positions, the index listing) and changes nothing.  A real run executes the same plan, so
the figures it reports are the plan's figures unless something changed in between.

With integrity on, every deletion asks the same question first: does the day verify (with
its neighbours' chain evidence and the store's head)?  A day that does not keeps its rows,
its export objects and its Elasticsearch index, on every run, whatever the policy says:
they are the evidence, and they are listed in :attr:`RetentionPlan.held` with the reason.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from audit_pipeline.config.settings import Settings
from audit_pipeline.core.layout import FORMATS
from audit_pipeline.integrity.head import seen_head
from audit_pipeline.integrity.report import DayReport
from audit_pipeline.retention.backlog import SinkHold, sink_holds
from audit_pipeline.retention.database import RetentionDatabase
from audit_pipeline.retention.delivered import DeliveryCounts
from audit_pipeline.retention.elasticsearch import DailyIndex, IndexRetention, elasticsearch_sink
from audit_pipeline.retention.export_check import ExportChecker, ExportEvidence
from audit_pipeline.retention.export_objects import ExportObject, due_objects, due_summaries, exported_ids, exported_objects
from audit_pipeline.retention.policy import RetentionPolicy
from audit_pipeline.retention.record import read_record
from audit_pipeline.storage.object_store import ObjectStore


@dataclass
class DatabaseDay:
    day: dt.date
    rows: int
    action: Literal["delete", "keep"]
    reason: str
    evidence: ExportEvidence | None = None
    #: Kept because the day (or its chain evidence, or the store's head) fails verification.
    failed_verification: bool = False


@dataclass(frozen=True)
class HeldDay:
    """A day past the policy of which nothing is deleted because it fails verification."""

    day: dt.date
    #: Its rows still in the database (0 when none are, or the database has no policy).
    rows: int
    #: Its export objects that are past their policy but kept.
    objects: int
    #: Its Elasticsearch index, kept, if one is due.
    index: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "rows": self.rows, "export_objects": self.objects, "index": self.index, "reason": self.reason}


@dataclass(frozen=True)
class Figures:
    """The numbers a dry run promises and a real run reports; they agree."""

    database_days: int
    database_rows: int
    database_days_kept: int
    database_rows_kept: int
    export_objects: dict[str, int]
    indices: int
    index_documents: int
    summaries: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "database_days_deleted": self.database_days,
            "database_rows_deleted": self.database_rows,
            "database_days_kept": self.database_days_kept,
            "database_rows_kept": self.database_rows_kept,
            **{f"{fmt}_objects_deleted": self.export_objects.get(fmt, 0) for fmt in FORMATS},
            "indices_deleted": self.indices,
            "index_documents_deleted": self.index_documents,
            "summaries_deleted": self.summaries,
        }


@dataclass
class RetentionPlan:
    today: dt.date
    policy: RetentionPolicy
    #: Oldest day kept, per store (None: unlimited).
    cutoffs: dict[str, dt.date | None]
    database: list[DatabaseDay] = field(default_factory=list)
    objects: list[ExportObject] = field(default_factory=list)
    #: Days whose objects are due but kept, and why.
    objects_kept: dict[dt.date, str] = field(default_factory=dict)
    #: Per day kept above, its objects that are past their policy.
    objects_held: dict[dt.date, list[ExportObject]] = field(default_factory=dict)
    #: The verification of each day whose objects are deleted: the retirement record is written only for these.
    verified: dict[dt.date, DayReport] = field(default_factory=dict)
    #: Daily summary keys that go with the last of their day's exports.
    summaries: list[str] = field(default_factory=list)
    indices: list[DailyIndex] = field(default_factory=list)
    #: Indices past the policy kept because their day fails verification, and why.
    indices_kept: dict[str, tuple[DailyIndex, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def held(self) -> list[HeldDay]:
        """Every day past a policy of which nothing is deleted because it fails verification, oldest first, with the reason."""
        rows = {d.day: d for d in self.database if d.failed_verification}
        indices = {index.day: (index.name, reason) for index, reason in self.indices_kept.values()}
        held = []
        for day in sorted({*rows, *self.objects_kept, *indices}):
            entry = rows.get(day)
            reason = entry.reason if entry is not None else self.objects_kept.get(day) or indices[day][1]
            index = indices.get(day)
            held.append(HeldDay(day, entry.rows if entry else 0, len(self.objects_held.get(day, [])), index[0] if index else None, reason))
        return held

    @property
    def days_to_delete(self) -> list[DatabaseDay]:
        return [d for d in self.database if d.action == "delete"]

    @property
    def days_kept(self) -> list[DatabaseDay]:
        return [d for d in self.database if d.action == "keep"]

    def figures(self) -> Figures:
        deleting, kept = self.days_to_delete, self.days_kept
        return Figures(
            len(deleting),
            sum(d.rows for d in deleting),
            len(kept),
            sum(d.rows for d in kept),
            {fmt: sum(1 for o in self.objects if o.format == fmt) for fmt in FORMATS},
            len(self.indices),
            sum(i.docs for i in self.indices),
            len(self.summaries),
        )


def cutoffs_for(policy: RetentionPolicy, today: dt.date) -> dict[str, dt.date | None]:
    return {
        "database": policy.database.cutoff(today),
        "elasticsearch": policy.elasticsearch.cutoff(today),
        **{fmt: policy.exports[fmt].cutoff(today) for fmt in FORMATS},
    }


def build_plan(
    settings: Settings,
    policy: RetentionPolicy,
    store: ObjectStore,
    today: dt.date,
    *,
    deleting: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> RetentionPlan:
    """Everything past the policy on ``today``, each database day decided (legal hold is the caller's)."""
    plan = RetentionPlan(today, policy, cutoffs_for(policy, today))
    export_cutoffs = {fmt: plan.cutoffs[fmt] for fmt in FORMATS}
    # One checker for the plan: a day's verification is computed once, whichever store asks.
    checker = ExportChecker(store, settings.integrity, settings.export.csv_formula_protection, export_cutoffs)
    plan.warnings.extend(checker.keyring.warnings)
    head_problem = checker.head_problem(seen_head(settings, store))
    if head_problem is not None:
        plan.warnings.append(head_problem)
    database_cutoff = plan.cutoffs["database"]
    if database_cutoff is not None and policy.database_url is not None:
        _plan_database(plan, settings, store, checker, database_cutoff, deleting, log)
    if any(c is not None for c in export_cutoffs.values()):
        _plan_exports(plan, store, checker, export_cutoffs)
    index_cutoff = plan.cutoffs["elasticsearch"]
    if index_cutoff is not None:
        indices = IndexRetention(elasticsearch_sink(settings))
        try:
            due = [i for i in indices.daily_indices() if i.day < index_cutoff]
        finally:
            indices.close()
        for index in due:
            reason = checker.held(index.day)
            if reason is None:
                plan.indices.append(index)
            else:
                plan.indices_kept[index.name] = (index, reason)
    _warn_failed_verification(plan)
    return plan


def _plan_database(
    plan: RetentionPlan, settings: Settings, store: ObjectStore, checker: ExportChecker, cutoff: dt.date, deleting: bool, log: Callable[[str], None]
) -> None:
    assert plan.policy.database_url is not None
    with RetentionDatabase(plan.policy.database_url, settings.source.table) as database:
        database.check(deleting)
        days = database.rows_per_day(cutoff)
        if not days:
            return
        log(f"{len(days)} day(s) before {cutoff} still hold rows; checking their exports and what every sink holds")
        holds = sink_holds(settings)
        head_problem = checker.head
        counts = DeliveryCounts(settings, plan.cutoffs["elasticsearch"])
        held: dict[str, list[DatabaseDay]] = {}
        try:
            for day, rows in days:
                rows_after = functools.partial(database.rows_after, day)
                blocking = [h for h in holds if h.holds(day, rows_after)]
                if blocking:
                    names = ", ".join(f"{h.sink} (position {h.position})" for h in blocking)
                    entry = DatabaseDay(day, rows, "keep", f"not yet delivered by sink {names}")
                    for hold in blocking:
                        held.setdefault(hold.sink, []).append(entry)
                else:
                    record = read_record(store, day)
                    evidence = checker.check(day, rows, record if record is not None and record.status != "re-exported" else None)
                    entry = DatabaseDay(day, rows, "delete" if evidence.safe else "keep", evidence.reason, evidence, evidence.failed_verification)
                    if evidence.safe and head_problem is not None:
                        entry = DatabaseDay(day, rows, "keep", head_problem, failed_verification=True)
                    elif evidence.safe:
                        shortfall = _delivery_shortfall(counts, database, store, day, evidence, plan.policy.batch_rows)
                        if shortfall is not None:
                            entry = DatabaseDay(day, rows, "keep", shortfall, evidence)
                plan.database.append(entry)
        finally:
            counts.close()
    for hold in holds:
        _warn_held(plan, hold, held.get(hold.sink, []))
    unexported = [d for d in plan.days_kept if d.evidence is not None and not d.evidence.safe and not d.failed_verification]
    if unexported:
        plan.warnings.append(
            f"{len(unexported)} day(s) past retention.database ({plan.policy.database}) are kept because they are not safely exported "
            f"({unexported[0].day}: {unexported[0].reason})"
        )
    short = [d for d in plan.days_kept if d.evidence is not None and d.evidence.safe]
    if short:
        plan.warnings.append(
            f"{len(short)} day(s) past retention.database are kept because a sink holds fewer of their events ({short[0].day}: {short[0].reason})"
        )


def _delivery_shortfall(
    counts: DeliveryCounts, database: RetentionDatabase, store: ObjectStore, day: dt.date, evidence: ExportEvidence, batch_rows: int
) -> str | None:
    """Why a safely exported day is still kept because a sink holds fewer of its events, if it is."""
    source, rows = evidence.id_object, evidence.exported_rows
    assert source is not None and rows is not None
    return counts.shortfall(
        day,
        rows,
        ids=lambda: exported_ids(store, source, batch_rows, evidence.csv_options),
        rows_after=lambda created_at, event_id: database.rows_after(day, created_at, event_id),
    )


def _warn_held(plan: RetentionPlan, hold: SinkHold, days: list[DatabaseDay]) -> None:
    if not days:
        return
    plan.warnings.append(
        f"sink {hold.sink} has not delivered {sum(d.rows for d in days):,} rows of {len(days)} day(s) past retention.database "
        f"({days[0].day} to {days[-1].day}; its position is {hold.position}): they are kept until it catches up. "
        f"Check the sink (audit-pipeline forward {hold.sink} --once), or disable it ({hold.disable_hint}) if it is gone for good"
    )


def _warn_failed_verification(plan: RetentionPlan) -> None:
    held = plan.held
    if not held:
        return
    first = held[0]
    plan.warnings.append(
        f"{len(held)} day(s) past the policy fail verification: none of their rows ({sum(h.rows for h in held):,}), export objects "
        f"({sum(h.objects for h in held)}) or indices ({sum(1 for h in held if h.index)}) is deleted until `audit-pipeline verify` passes for them "
        f"or an operator resolves them (audit-pipeline rechain --from DAY --reason ...) ({first.day}: {first.reason})"
    )


def _plan_exports(plan: RetentionPlan, store: ObjectStore, checker: ExportChecker, cutoffs: dict[str, dt.date | None]) -> None:
    """Due objects, except those of days that fail verification (with integrity on): those are the evidence."""
    listed = exported_objects(store)
    due = due_objects(listed, cutoffs)
    for obj in due:
        if obj.day not in plan.objects_kept and obj.day not in plan.verified:
            reason = checker.held(obj.day)
            report = checker.report(obj.day)
            if reason is not None:
                plan.objects_kept[obj.day] = reason
            elif report is not None:
                plan.verified[obj.day] = report
        if obj.day in plan.objects_kept:
            plan.objects_held.setdefault(obj.day, []).append(obj)
        else:
            plan.objects.append(obj)
    # With the head in doubt nothing goes, summaries included (the warning says so).
    plan.summaries = due_summaries(store, cutoffs, listed, plan.objects) if checker.head is None else []
