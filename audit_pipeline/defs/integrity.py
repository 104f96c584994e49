"""Deep verification, scheduled: ``verify_job`` recomputes the entry chain from every object of a range of days.

The per-partition ``integrity`` check proves each object by its checksum against the signed
manifest; recomputing the chain from the rows of every format is what ``audit-pipeline
verify`` does, and this job runs it off the export's path: nightly over the last days, and
a full pass weekly.  A day that fails verification fails the run, naming the day and what
is wrong, so it shows in the UI (Runs, and the job's page).

Both schedules start stopped (the demo runs none); turn them on in the UI or set
``AUDIT_VERIFY_SCHEDULES=running``.  ``AUDIT_VERIFY_RECENT_DAYS`` (default 7),
``AUDIT_VERIFY_NIGHTLY_CRON`` (default ``0 3 * * *``) and ``AUDIT_VERIFY_WEEKLY_CRON``
(default ``0 4 * * 0``) change the window and the times (UTC).
"""

import datetime as dt
import os
from typing import Any

import dagster as dg
from pydantic import Field

from audit_pipeline.defs.naming import UNPREFIXED, Naming
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.integrity.head import seen_head
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.integrity.verify import Verifier

RECENT_DAYS = int(os.environ.get("AUDIT_VERIFY_RECENT_DAYS") or 7)
NIGHTLY_CRON = os.environ.get("AUDIT_VERIFY_NIGHTLY_CRON") or "0 3 * * *"
WEEKLY_CRON = os.environ.get("AUDIT_VERIFY_WEEKLY_CRON") or "0 4 * * 0"
SCHEDULE_STATUS = dg.DefaultScheduleStatus.RUNNING if os.environ.get("AUDIT_VERIFY_SCHEDULES") == "running" else dg.DefaultScheduleStatus.STOPPED


class VerifyConfig(dg.Config):
    days: int = Field(
        default=RECENT_DAYS,
        ge=0,
        description="Verify the days that closed in the last this many days; 0 verifies every day in the store (a full pass).",
    )


def verify_exports(context: dg.OpExecutionContext, audit: AuditPipelineResource, config: VerifyConfig) -> dg.Output[None]:  # type: ignore[type-arg]
    """Verify exported days from the object store alone: manifests, signatures, links, and the entry chain recomputed from every object."""
    settings = audit.settings().integrity
    if not settings.enabled:
        context.log.info("integrity.enabled is false: there are no manifests to verify")
        return dg.Output(None, metadata={"days": 0, "status": "disabled"})
    verifier = Verifier(audit.object_store(), Keyring.build(settings))
    # Only days between the first and the last exported one: a day not exported yet is not a failure.
    known = sorted(set(verifier.manifest_days) | set(verifier.retired_days) | set(verifier.data_days()))
    reports = []
    if known:
        first = max(known[0], dt.datetime.now(dt.UTC).date() - dt.timedelta(days=config.days)) if config.days else known[0]
        if first <= known[-1]:
            reports = verifier.verify_range(first, known[-1])
    failed = [r for r in reports if not r.ok and not r.only_link_problems]
    head = verifier.check_head(seen_head(audit.settings(), audit.object_store()))
    for warning in verifier.keyring.warnings:
        context.log.warning(warning)
    for note in head.notes:
        context.log.info(note)
    for problem in head.problems:
        context.log.error(f"head: {problem}")
    for report in reports:
        line = f"{report.day}: {report.status}" + (f" - {'; '.join(p.message for p in report.problems)}" if report.problems else "")
        (context.log.error if report in failed else context.log.info)(line)
    summary: dict[str, Any] = {
        "days": len(reports),
        "failed": len(failed),
        "range": f"{reports[0].day} .. {reports[-1].day}" if reports else "(no exported days)",
        "problems": dg.MetadataValue.json({str(r.day): [p.message for p in r.problems] for r in reports if r.problems}),
        "head_problems": dg.MetadataValue.json(head.problems),
    }
    if head.problems and not failed:
        raise dg.Failure(
            description=f"the export store's head does not check out: {head.problems[0]}. Run `audit-pipeline verify` for the details.",
            metadata=summary,
            allow_retries=False,
        )
    if failed:
        names = ", ".join(str(r.day) for r in failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
        raise dg.Failure(
            description=f"{len(failed)} of {len(reports)} days do not verify: {names}; first: {failed[0].problems[0].message}. "
            f"Run `audit-pipeline verify --from {failed[0].day} --to {failed[-1].day}` for the details.",
            metadata=summary,
            allow_retries=False,
        )
    return dg.Output(None, metadata=summary)


def build_integrity_jobs(naming: Naming = UNPREFIXED) -> tuple[dg.JobDefinition, dg.ScheduleDefinition, dg.ScheduleDefinition]:
    """``verify_job`` and its two schedules, named for one deployment."""
    op_name = naming.name("verify_exports")

    @dg.op(
        name=op_name,
        description="Verify exported days from the object store alone: manifests, signatures, links, and the entry chain recomputed from every object.",
        tags={"kind": "integrity"},
        required_resource_keys={naming.resource_key},
    )
    def verify_op(context: dg.OpExecutionContext, config: VerifyConfig) -> dg.Output[None]:  # type: ignore[type-arg]
        return verify_exports(context, naming.resource(context), config)

    @dg.job(
        name=naming.name("verify_job"),
        description="Deep verification of exported days (the entry chain recomputed from every object); nightly over recent days, weekly in full.",
    )
    def verify_job() -> None:
        verify_op()

    recent = dg.ScheduleDefinition(
        name=naming.name("verify_recent_schedule"),
        job=verify_job,
        cron_schedule=NIGHTLY_CRON,
        execution_timezone="UTC",
        run_config={"ops": {op_name: {"config": {"days": RECENT_DAYS}}}},
        default_status=SCHEDULE_STATUS,
        description=f"Verify the last {RECENT_DAYS} days ({NIGHTLY_CRON} UTC).",
    )
    full = dg.ScheduleDefinition(
        name=naming.name("verify_full_schedule"),
        job=verify_job,
        cron_schedule=WEEKLY_CRON,
        execution_timezone="UTC",
        run_config={"ops": {op_name: {"config": {"days": 0}}}},
        default_status=SCHEDULE_STATUS,
        description=f"Verify every exported day ({WEEKLY_CRON} UTC).",
    )
    return verify_job, recent, full


#: This repository's own names (tests and benchmarks run the job in process).
verify_job, verify_recent_schedule, verify_full_schedule = build_integrity_jobs()


def build_integrity_definitions(naming: Naming = UNPREFIXED) -> dg.Definitions:
    job, recent, full = build_integrity_jobs(naming)
    return dg.Definitions(jobs=[job], schedules=[recent, full])
