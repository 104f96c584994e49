"""Daily export assets (CSV, NDJSON, Parquet from one pass), their checks, job and schedule."""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from audit_pipeline.daylock import day_lock
from audit_pipeline.defs.partitions import daily_partitions
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.errors import AuditPipelineError, SourceError, StorageError
from audit_pipeline.event_filters import daily_export_filter, describe
from audit_pipeline.export import DayExport, export_day
from audit_pipeline.integrity.sealing import DaySealer
from audit_pipeline.readback import DayCheck, check_completeness, check_schema
from audit_pipeline.retention.record import forced_reexport_reason, read_record
from audit_pipeline.schema import ARROW_SCHEMA, DESCRIPTIONS
from audit_pipeline.sources.base import TimeRange

EXPORT_ASSETS = {
    "csv": dg.AssetKey("audit_logs_csv"),
    "ndjson": dg.AssetKey("audit_logs_ndjson"),
    "parquet": dg.AssetKey("audit_logs_parquet"),
}
SOURCE_TABLE = dg.AssetKey("audit_logs")
EXPORT_POOL = "audit_source"

COLUMN_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(f.name, str(f.type), description=DESCRIPTIONS[f.name], constraints=dg.TableColumnConstraints(nullable=f.nullable)) for f in ARROW_SCHEMA
    ]
)

_FORMAT_TEXT = {
    "csv": "RFC 4180 CSV, UTF-8, CRLF, header row, formula-injection-safe cells",
    "ndjson": "NDJSON, one object per line, keys in column order, metadata nested",
    "parquet": "Parquet, zstd, typed (created_at timestamp[us, UTC]), sorted by (created_at, id)",
}

audit_logs_table = dg.AssetSpec(
    SOURCE_TABLE,
    description="HelloJohn's audit_logs table in PostgreSQL (or the embedded demo database), read with SELECT only.",
    group_name="audit_logs",
    kinds={"postgres"},
    owners=["team:security-engineering"],
    metadata={"dagster/column_schema": COLUMN_SCHEMA},
)


class ExportDayConfig(dg.Config):
    force: bool = Field(
        default=False,
        description="Export the day even though retention deleted its database rows (e.g. after restoring them); otherwise such a day is refused.",
    )


def _day(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def _metadata(export: DayExport, fmt: str, source_description: str) -> dict[str, Any]:
    objects = export.for_format(fmt)
    meta: dict[str, Any] = {
        "dagster/row_count": export.rows,
        "dagster/partition_row_count": export.rows,
        "bytes": sum(o.bytes for o in objects),
        "dagster/uri": dg.MetadataValue.url(objects[0].uri) if objects else None,
        "objects": dg.MetadataValue.json([{"key": o.key, "bytes": o.bytes, "sha256": o.sha256, "content_type": o.content_type} for o in objects]),
        "sha256": objects[0].sha256 if len(objects) == 1 else dg.MetadataValue.json([o.sha256 for o in objects]),
        "min_created_at": export.min_created_at.isoformat() if export.min_created_at else "(no events)",
        "max_created_at": export.max_created_at.isoformat() if export.max_created_at else "(no events)",
        "source": source_description,
        "filtered": export.event_filter is not None and not export.event_filter.is_empty,
        # The export.filter patterns, so that a filtered day is never taken for the whole day.
        "filter": dg.MetadataValue.json(describe(export.event_filter)) if describe(export.event_filter) else None,
        "dagster/column_schema": COLUMN_SCHEMA,
    }
    return {k: v for k, v in meta.items() if v is not None}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key,
            deps=[SOURCE_TABLE],
            description=f"One UTC day of audit events as {_FORMAT_TEXT[fmt]}, at {{export}}/{fmt}/date=YYYY-MM-DD/.",
            group_name="audit_exports",
            kinds={fmt, "postgres"},
            owners=["team:security-engineering"],
            metadata={"dagster/column_schema": COLUMN_SCHEMA, "layout": f"{{export}}/{fmt}/date=YYYY-MM-DD/"},
        )
        for fmt, key in EXPORT_ASSETS.items()
    ],
    partitions_def=daily_partitions,
    # No BackfillPolicy on purpose: a backfill then runs one partition per run tagged
    # dagster/partition, so each day gets its own metadata, checks and manifest.  Any policy,
    # even multi_run(1), makes partition-range runs whose check results Dagster 1.13 records
    # without a partition (see "Operating it" in the README).
    pool=EXPORT_POOL,
    can_subset=False,
    name="audit_logs_daily_export",
)
def audit_logs_daily_export(
    context: dg.AssetExecutionContext,
    audit: AuditPipelineResource,
    config: ExportDayConfig,
) -> Iterator[dg.MaterializeResult]:  # type: ignore[type-arg]
    """Stream the partition day from the source once, writing all three formats, then publish atomically."""
    try:
        settings = audit.settings()
        store = audit.object_store()
        # One export of the day at a time on every machine (a Celery step may be redelivered while it still runs).
        with day_lock(settings, _day(context)) as lock:
            # A forced re-export of a day retention emptied is recorded in its manifest as a rechain.
            retired = read_record(store, _day(context)) if config.force else None
            rechain = forced_reexport_reason(retired) if retired else None
            sealer = DaySealer.from_settings(settings, store, _day(context), rechain_reason=rechain)  # entry chain + manifest (integrity section)
            with audit.open_source() as source:
                export = export_day(
                    source,
                    store,
                    _day(context),
                    settings.export,
                    event_filter=daily_export_filter(settings.export),
                    force=config.force,
                    fail_before_publish=lock.confirm,
                    **sealer.export_hooks(),
                )
                origin = source.description
            sealed = sealer.after_publish(warn=context.log.warning)
    except AuditPipelineError as exc:
        # A message the operator can act on, instead of a stack trace in the UI.
        raise dg.Failure(description=str(exc), allow_retries=isinstance(exc, SourceError | StorageError)) from None
    context.log.info(f"exported {export.rows} events of {export.day} from {origin} to {store.uri('')}")
    context.log.info(sealed)
    for fmt, key in EXPORT_ASSETS.items():
        yield dg.MaterializeResult(asset_key=key, metadata=_metadata(export, fmt, origin))


def _result(check: DayCheck) -> dg.AssetCheckResult:
    metadata = {k: dg.MetadataValue.json(v) if isinstance(v, dict) else v for k, v in check.metadata.items()}
    return dg.AssetCheckResult(passed=check.passed, description=check.description, metadata=metadata)


def _build_checks(fmt: str, key: dg.AssetKey) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(
        asset=key,
        name="complete",
        description=f"Every published {fmt.upper()} object of the day, read back, holds exactly as many rows as the source has for that UTC day.",
        partitions_def=daily_partitions,
        blocking=True,
        pool=EXPORT_POOL,
    )
    def complete(context: dg.AssetCheckExecutionContext, audit: AuditPipelineResource) -> dg.AssetCheckResult:  # type: ignore[type-arg]
        day = dt.date.fromisoformat(context.partition_key)
        with audit.open_source() as source:
            expected = source.count(TimeRange.for_day(day), daily_export_filter(audit.settings().export))  # same filter as the export
        return _result(check_completeness(audit.object_store(), fmt, day, expected))

    @dg.asset_check(
        asset=key,
        name="schema",
        description=f"The {fmt.upper()} object has the 14 audit columns in their fixed order (and, for Parquet, their types).",
        partitions_def=daily_partitions,
    )
    def schema(context: dg.AssetCheckExecutionContext, audit: AuditPipelineResource) -> dg.AssetCheckResult:  # type: ignore[type-arg]
        return _result(check_schema(audit.object_store(), fmt, dt.date.fromisoformat(context.partition_key)))

    return [complete, schema]


export_checks = [check for fmt, key in EXPORT_ASSETS.items() for check in _build_checks(fmt, key)]

daily_export_job = dg.define_asset_job(
    "daily_export_job",
    selection=dg.AssetSelection.assets(*EXPORT_ASSETS.values()),
    description="Export one UTC day of audit logs to CSV, NDJSON and Parquet, then check the published objects.",
    tags={"dagster/max_retries": 2, "dagster/retry_strategy": "FROM_FAILURE"},
)

daily_export_schedule = dg.build_schedule_from_partitioned_job(
    daily_export_job,
    hour_of_day=0,
    minute_of_hour=30,
    name="daily_export_schedule",
    description="Every night at 00:30 UTC, export the day that just closed.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

defs = dg.Definitions(
    assets=[audit_logs_table, audit_logs_daily_export],
    asset_checks=export_checks,
    jobs=[daily_export_job],
    schedules=[daily_export_schedule],
)
