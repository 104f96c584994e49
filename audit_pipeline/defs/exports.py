"""Daily export assets (CSV, NDJSON, Parquet from one pass), their one check pass per day, job and schedule."""

import datetime as dt
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field

from audit_pipeline.checks.day import CHECK_NAMES, CheckName, DayCheckPass, count_for_complete
from audit_pipeline.core.errors import AuditPipelineError, SourceError, StorageError
from audit_pipeline.core.event_filters import daily_export_filter, describe
from audit_pipeline.core.schema import ARROW_SCHEMA, DESCRIPTIONS
from audit_pipeline.defs.naming import UNPREFIXED, Naming
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.exports.day import DayExport
from audit_pipeline.recipes.sealed_export import export_sealed_day
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

#: The Dagster kind of each source type: what the UI shows as the data's origin.
SOURCE_KINDS = {"postgres": "postgres", "demo": "sqlite", "hellojohn_api": "api"}
_SOURCE_TEXT = {
    "postgres": "HelloJohn's audit_logs table in PostgreSQL, read with SELECT only.",
    "demo": "The embedded demo database (SQLite, synthetic events): no source is configured.",
    "hellojohn_api": "HelloJohn's audit log API, read with a secret key.",
}


def source_table_spec(source_type: str = "postgres", naming: Naming = UNPREFIXED) -> dg.AssetSpec:
    return dg.AssetSpec(
        naming.key(SOURCE_TABLE),
        description=_SOURCE_TEXT[source_type],
        group_name="audit_logs",
        kinds={SOURCE_KINDS[source_type]},
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


_CHECK_TEXT = {
    "complete": "The published {FMT} object is byte for byte what the export sealed (size and SHA-256, from the store's checksum or one "
    "streaming read), and the sealed row count equals the source's count for the UTC day.",
    "schema": "The {FMT} object states the 14 audit columns in their fixed order (and, for Parquet, their types): "
    "the CSV header, the first NDJSON line or the Parquet footer, read without downloading the object.",
    "integrity": "The day's manifest is signed and chained to the previous day, and the {FMT} object's SHA-256 and size match it. "
    "The entry chain is recomputed from the rows by verify_job and `audit-pipeline verify`.",
}


def day_check_specs(daily_partitions: dg.DailyPartitionsDefinition, naming: Naming = UNPREFIXED) -> list[dg.AssetCheckSpec]:
    """complete, schema and integrity for each export asset, per partition day."""
    with warnings.catch_warnings():  # partitioned check specs are "preview" in 1.13, as @asset_check(partitions_def=...) was
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(
                name,
                asset=naming.key(key),
                description=_CHECK_TEXT[name].format(FMT=fmt.upper()),
                # A day that is incomplete or fails its integrity check feeds nothing downstream (the summary, derived exports).
                blocking=name in ("complete", "integrity"),
                partitions_def=daily_partitions,
            )
            for fmt, key in EXPORT_ASSETS.items()
            for name in CHECK_NAMES
        ]


def _recorded_metadata(instance: dg.DagsterInstance, day: dt.date, naming: Naming) -> dict[str, dict[str, Any] | None]:
    """Each format's latest materialization metadata for the day: the sealed figures when there is no manifest."""
    recorded: dict[str, dict[str, Any] | None] = {}
    for fmt, key in EXPORT_ASSETS.items():
        found = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=naming.key(key), asset_partitions=[day.isoformat()]), limit=1).records
        materialization = found[0].asset_materialization if found else None
        recorded[fmt] = {k: v.value for k, v in materialization.metadata.items()} if materialization else None
    return recorded


def _as_metadata(values: dict[str, Any]) -> dict[str, Any]:
    return {k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v for k, v in values.items()}


def day_check_results(
    audit: AuditPipelineResource,
    day: dt.date,
    wanted: list[tuple[str, CheckName]] | None = None,
    instance: dg.DagsterInstance | None = None,
    naming: Naming = UNPREFIXED,
) -> dict[tuple[str, CheckName], dg.AssetCheckResult]:
    """The verdicts of one check pass over ``day`` (every check unless ``wanted`` says which), for ``naming``'s assets."""
    wanted = wanted or [(fmt, name) for fmt in EXPORT_ASSETS for name in CHECK_NAMES]
    settings = audit.settings()
    config = settings.integrity
    recorded = _recorded_metadata(instance, day, naming) if instance is not None and not config.enabled else None
    check_pass = DayCheckPass(audit.object_store(), day, config)
    if not any(name == "complete" for _fmt, name in wanted):
        verdicts = check_pass.run(wanted, source_rows=None, recorded=recorded)
        counted = None
    else:
        # The one count of the day, with the export's filter, runs on the database while the objects are hashed.
        with audit.open_source() as source, ThreadPoolExecutor(max_workers=1, thread_name_prefix="count") as pool:
            counting = pool.submit(count_for_complete(source), TimeRange.for_day(day), daily_export_filter(settings.export))
            verdicts = check_pass.run(wanted, source_rows=counting.result, recorded=recorded)
            counted = source.count_method  # how the source counted, e.g. through the HelloJohn list, apart from the export stream
    for (_fmt, name), verdict in verdicts.items():
        if name == "complete" and counted is not None:
            verdict.metadata["count_method"] = counted
    return {
        (fmt, name): dg.AssetCheckResult(
            asset_key=naming.key(EXPORT_ASSETS[fmt]),
            check_name=name,
            passed=v.passed,
            severity=dg.AssetCheckSeverity.WARN if v.warning else dg.AssetCheckSeverity.ERROR,
            description=v.description,
            metadata=_as_metadata(v.metadata),
        )
        for (fmt, name), v in verdicts.items()
    }


@dataclass(frozen=True)
class ExportDefinitions:
    """The daily export asset, its checks, job and schedule, over one set of daily partitions."""

    table: dg.AssetSpec
    daily_export: dg.AssetsDefinition
    checks: list[dg.AssetChecksDefinition]
    job: Any
    schedule: Any  # a ScheduleDefinition, or the unresolved partitioned schedule Dagster resolves at load

    def definitions(self) -> dg.Definitions:
        return dg.Definitions(assets=[self.table, self.daily_export], asset_checks=self.checks, jobs=[self.job], schedules=[self.schedule])


def sealed_by_policy(minutes_after_midnight: int) -> dg.FreshnessPolicy:
    """Stale in the UI unless materialized between midnight UTC and ``export.sealed_by`` each day (the nightly export)."""
    hours, minutes = divmod(minutes_after_midnight, 60)
    return dg.FreshnessPolicy.cron(deadline_cron=f"{minutes} {hours} * * *", lower_bound_delta=dt.timedelta(minutes=minutes_after_midnight), timezone="UTC")


def build_export_definitions(
    daily_partitions: dg.DailyPartitionsDefinition, source_type: str = "postgres", sealed_by_minutes: int = 180, naming: Naming = UNPREFIXED
) -> ExportDefinitions:
    """Built per configuration: the partitions start at ``export.partition_start``, the kinds name the source, the
    freshness deadline is ``export.sealed_by``; ``naming`` gives the keys and names of one deployment."""
    keys = {fmt: naming.key(key) for fmt, key in EXPORT_ASSETS.items()}
    format_of = {key: fmt for fmt, key in keys.items()}

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                key,
                deps=[naming.key(SOURCE_TABLE)],
                description=f"One UTC day of audit events as {_FORMAT_TEXT[fmt]}, at {{export}}/{fmt}/date=YYYY-MM-DD/.",
                group_name="audit_exports",
                kinds={fmt, SOURCE_KINDS[source_type]},
                owners=["team:security-engineering"],
                metadata={"dagster/column_schema": COLUMN_SCHEMA, "layout": f"{{export}}/{fmt}/date=YYYY-MM-DD/"},
                freshness_policy=sealed_by_policy(sealed_by_minutes),
            )
            for fmt, key in keys.items()
        ],
        partitions_def=daily_partitions,
        # No BackfillPolicy on purpose: a backfill then runs one partition per run tagged
        # dagster/partition, so each day gets its own metadata, checks and manifest.  Any policy,
        # even multi_run(1), makes partition-range runs whose check results Dagster 1.13 records
        # without a partition (see "Operating it" in the README).
        pool=naming.name(EXPORT_POOL),
        can_subset=False,
        name=naming.name("audit_logs_daily_export"),
        required_resource_keys={naming.resource_key},
    )
    def audit_logs_daily_export(context: dg.AssetExecutionContext, config: ExportDayConfig) -> Iterator[dg.MaterializeResult]:  # type: ignore[type-arg]
        """Stream the partition day from the source once, writing all three formats, then publish atomically."""
        audit = naming.resource(context)
        try:
            store = audit.object_store()
            # Lock, re-export guard, sealer, export, links: one export of the day at a time on every machine
            # (a Celery step may be redelivered while it still runs); a forced re-export that changes the events is a rechain.
            sealed = export_sealed_day(audit.settings(), store, _day(context), audit.open_source, force=config.force, warn=context.log.warning)
        except AuditPipelineError as exc:
            # A message the operator can act on, instead of a stack trace in the UI.
            raise dg.Failure(description=str(exc), allow_retries=isinstance(exc, SourceError | StorageError)) from None
        export, origin = sealed.export, sealed.origin
        context.log.info(f"exported {export.rows} events of {export.day} from {origin} to {store.uri('')}")
        context.log.info(sealed.summary)
        for fmt, key in keys.items():
            yield dg.MaterializeResult(asset_key=key, metadata=_metadata(export, fmt, origin))

    @dg.multi_asset_check(
        specs=day_check_specs(daily_partitions, naming),
        name=naming.name("audit_logs_daily_checks"),
        description="One pass over the partition day: the source is counted once, each published object is proved by its checksum, nothing is parsed.",
        can_subset=True,
        pool=naming.name(EXPORT_POOL),
        required_resource_keys={naming.resource_key},
    )
    def audit_logs_daily_checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:  # type: ignore[type-arg]
        """complete, schema and integrity of every selected export asset, for the partition day."""
        wanted = [(format_of[k.asset_key], k.name) for k in context.selected_asset_check_keys]
        day = dt.date.fromisoformat(context.partition_key)  # type: ignore[arg-type]
        try:
            results = day_check_results(naming.resource(context), day, wanted, context.instance, naming)
        except AuditPipelineError as exc:
            raise dg.Failure(description=str(exc), allow_retries=isinstance(exc, SourceError | StorageError)) from None
        yield from results.values()

    daily_export_job = dg.define_asset_job(
        naming.name("daily_export_job"),
        selection=dg.AssetSelection.assets(*keys.values()),
        description="Export one UTC day of audit logs to CSV, NDJSON and Parquet, then check the published objects.",
        tags={"dagster/max_retries": 2, "dagster/retry_strategy": "FROM_FAILURE"},
    )

    daily_export_schedule = dg.build_schedule_from_partitioned_job(
        daily_export_job,
        hour_of_day=0,
        minute_of_hour=30,
        name=naming.name("daily_export_schedule"),
        description="Every night at 00:30 UTC, export the day that just closed.",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )

    export_checks: list[dg.AssetChecksDefinition] = [audit_logs_daily_checks]
    return ExportDefinitions(source_table_spec(source_type, naming), audit_logs_daily_export, export_checks, daily_export_job, daily_export_schedule)
