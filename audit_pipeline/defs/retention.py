"""Retention as a Dagster job on a daily schedule; each run records what it deleted and kept as metadata.

The schedule passes the tick's UTC date as ``today``, so a retried or re-executed run of
the same tick computes the same cutoffs and deletes nothing more.  ``today`` is bounded by
the source database's date: a later one fails the run and deletes nothing.  The job runs in its own
pool; every step is idempotent, so a run that failed half-way is simply re-executed.
"""

import datetime as dt
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from audit_pipeline.core.errors import AuditPipelineError, SourceError, StorageError
from audit_pipeline.defs.exports import EXPORT_ASSETS, SOURCE_TABLE
from audit_pipeline.defs.naming import UNPREFIXED, Naming
from audit_pipeline.defs.resources import AuditPipelineResource

if TYPE_CHECKING:  # retention (and its Elasticsearch client) is imported when the job runs, not by every run of the code location
    from audit_pipeline.retention.run import RetentionResult

RETENTION_POOL = "audit_retention"


class RetentionConfig(dg.Config):
    today: str | None = Field(
        default=None,
        description="UTC day the ages are counted from (YYYY-MM-DD); default: the source database's date. It may be earlier (to preview), never later.",
    )
    dry_run: bool = Field(default=False, description="Only plan: record what would be deleted, change nothing.")


def _metadata(result: "RetentionResult") -> dict[str, Any]:
    figures = result.figures().as_dict()
    meta: dict[str, Any] = {**figures, "dry_run": result.dry_run, "legal_hold": result.legal_hold}
    plan = result.plan
    if plan is not None:
        meta["today"] = plan.today.isoformat()
        meta["policy"] = plan.policy.describe()
        meta["database_days"] = dg.MetadataValue.json(
            [
                {"day": d.day.isoformat(), "rows": d.rows, "action": d.action, "rows_deleted": result.rows_deleted.get(d.day), "reason": d.reason}
                for d in plan.database
            ]
        )
        done = plan.objects if result.dry_run else result.objects_deleted
        meta["export_objects"] = dg.MetadataValue.json([o.key for o in done])
        indices = plan.indices if result.dry_run else result.indices_deleted
        meta["indices"] = dg.MetadataValue.json([{"index": i.name, "documents": i.docs} for i in indices])
        # Days of which nothing is deleted because they fail verification: rows, objects and index kept, with the reason.
        meta["held_by_verification"] = dg.MetadataValue.json([h.as_dict() for h in plan.held])
    meta["warnings"] = dg.MetadataValue.json(result.warnings)
    return meta


def apply_retention(context: dg.OpExecutionContext, config: RetentionConfig, audit: AuditPipelineResource, naming: Naming) -> dg.Output[dict]:  # type: ignore[type-arg]
    """Delete rows, export objects and Elasticsearch indices older than the retention policy, never an unexported day."""
    try:
        today = dt.date.fromisoformat(config.today) if config.today else None
    except ValueError:
        raise dg.Failure(description=f"config today must be a day as YYYY-MM-DD, got {config.today!r}") from None
    from audit_pipeline.retention.run import run_retention

    try:
        result = run_retention(
            audit.settings(), today=today, dry_run=config.dry_run, log=context.log.info, warn=context.log.warning, today_option="config today"
        )
    except AuditPipelineError as exc:
        raise dg.Failure(description=str(exc), allow_retries=isinstance(exc, SourceError | StorageError)) from None
    metadata = _metadata(result)
    figures = result.figures()
    if result.plan is not None and not result.dry_run:
        context.log_event(
            dg.AssetObservation(
                asset_key=naming.key(SOURCE_TABLE),
                metadata={k: metadata[k] for k in ("database_days_deleted", "database_rows_deleted", "database_days_kept", "database_rows_kept", "today")},
            )
        )
        for fmt, key in EXPORT_ASSETS.items():
            if figures.export_objects.get(fmt):
                context.log_event(dg.AssetObservation(asset_key=naming.key(key), metadata={"objects_deleted_by_retention": figures.export_objects[fmt]}))
    return dg.Output(figures.as_dict(), metadata=metadata)


def build_retention_jobs(naming: Naming = UNPREFIXED) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """``retention_job`` and its daily schedule, named for one deployment."""
    op_name = naming.name("apply_retention")

    @dg.op(
        name=op_name,
        pool=naming.name(RETENTION_POOL),
        description="Delete rows, export objects and Elasticsearch indices older than the retention policy, never an unexported day.",
        required_resource_keys={naming.resource_key},
    )
    def retention_op(context: dg.OpExecutionContext, config: RetentionConfig) -> dg.Output[dict]:  # type: ignore[type-arg]
        return apply_retention(context, config, naming.resource(context), naming)

    @dg.job(
        name=naming.name("retention_job"), description="Apply the retention: policy once (database, exports, Elasticsearch).", tags={"dagster/max_retries": 1}
    )
    def retention_job() -> None:
        retention_op()

    @dg.schedule(
        job=retention_job,
        cron_schedule="0 3 * * *",
        execution_timezone="UTC",
        name=naming.name("retention_schedule"),
        description="Every day at 03:00 UTC, after the night's export, apply the retention policy as of that date.",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def retention_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        today = context.scheduled_execution_time.astimezone(dt.UTC).date().isoformat()
        return dg.RunRequest(run_key=f"retention:{today}", run_config={"ops": {op_name: {"config": {"today": today}}}}, tags={"retention/today": today})

    return retention_job, retention_schedule


#: This repository's own names (tests run the job in process).
retention_job, retention_schedule = build_retention_jobs()


def build_retention_definitions(naming: Naming = UNPREFIXED) -> dg.Definitions:
    job, schedule = build_retention_jobs(naming)
    return dg.Definitions(jobs=[job], schedules=[schedule])
