"""The daily security summary asset, its ``no_spike`` check, and a job that runs nothing else.

The summary depends on ``audit_logs_parquet`` and reads it; it never re-exports.  Backfilling
it over any range (``daily_summary_job``, or the asset's own backfill in the UI) materializes
only ``audit_logs_daily_summary`` and runs its check.
"""

import datetime as dt
from typing import TYPE_CHECKING, Any

import dagster as dg

from audit_pipeline.config.sections.summary import SummarySettings
from audit_pipeline.core.errors import AuditPipelineError, StorageError
from audit_pipeline.core.layout import summary_key
from audit_pipeline.defs.naming import UNPREFIXED, Naming
from audit_pipeline.defs.resources import AuditPipelineResource

if TYPE_CHECKING:  # the summary reads Parquet through DuckDB, imported when a summary runs, not by every run of the code location
    from audit_pipeline.analysis.summary import DaySummary

SUMMARY_ASSET = dg.AssetKey("audit_logs_daily_summary")
PARQUET_ASSET = dg.AssetKey("audit_logs_parquet")
#: Rows of each Markdown table in the materialization metadata.
MARKDOWN_ROWS = 10


def summary_settings(audit: AuditPipelineResource) -> SummarySettings:
    return audit.settings().summary


def _markdown(summary: "DaySummary") -> str:
    lines = ["**Failed logins by country**", "", "| country | logins | failed | rate |", "| --- | ---: | ---: | ---: |"]
    lines += [
        f"| {r['country'] or '(none)'} | {r['logins']} | {r['failed_logins']} | {r['failure_rate']:.1%} |"
        for r in summary.failed_logins_by_country[:MARKDOWN_ROWS]
    ]
    lines += ["", "**Top actors by failures**", "", "| actor | failures |", "| --- | ---: |"]
    lines += [f"| {r['actor_id']} | {r['failures']} |" for r in summary.top_actors_by_failures[:MARKDOWN_ROWS]]
    lines += ["", "**Events by type and result**", "", "| type | result | events |", "| --- | --- | ---: |"]
    lines += [f"| {r['type']} | {r['result']} | {r['events']} |" for r in summary.events_by_type_result[:MARKDOWN_ROWS]]
    return "\n".join(lines)


def summary_metadata(summary: "DaySummary", uri: str) -> dict[str, Any]:
    """Headline figures as numbers (the UI plots them across partitions) and the top rows as Markdown."""
    return {
        "events": dg.MetadataValue.int(summary.events),
        "failures": dg.MetadataValue.int(summary.failures),
        "logins": dg.MetadataValue.int(summary.logins),
        "failed_logins": dg.MetadataValue.int(summary.failed_logins),
        "failure_rate": dg.MetadataValue.float(summary.failure_rate),
        "distinct_actors": dg.MetadataValue.int(summary.distinct_actors),
        "new_actor_country_pairs": dg.MetadataValue.int(summary.new_actor_country_pairs),
        "baseline_days": dg.MetadataValue.int(summary.baseline.days),
        "top_rows": dg.MetadataValue.md(_markdown(summary)),
        "dagster/uri": dg.MetadataValue.url(uri),
    }


def build_summary_definitions(partitions: dg.DailyPartitionsDefinition, naming: Naming = UNPREFIXED) -> dg.Definitions:
    """The summary asset, its check, job and automation sensor over the export's daily partitions."""
    summary_asset = naming.key(SUMMARY_ASSET)

    @dg.asset(
        key=summary_asset,
        deps=[naming.key(PARQUET_ASSET)],
        partitions_def=partitions,
        description=(
            "A security view of one UTC day, computed with DuckDB from that day's Parquet export: events by type and result, "
            "failed logins and failure rate by country, distinct actors, top actors by failures, and actor × country pairs "
            "not seen in the previous 28 days; written to {export}/summary/date=YYYY-MM-DD/summary.json."
        ),
        group_name="audit_analysis",
        kinds={"duckdb", "parquet"},
        owners=["team:security-engineering"],
        metadata={"layout": "{export}/summary/date=YYYY-MM-DD/summary.json"},
        # Runs when the day's Parquet export is (re)materialized, through daily_summary_automation, and only once the
        # day's blocking checks (complete, integrity) passed: a short or tampered day is never summarised.
        automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        required_resource_keys={naming.resource_key},
    )
    def audit_logs_daily_summary(context: dg.AssetExecutionContext) -> dg.MaterializeResult:  # type: ignore[type-arg]
        """Summarise the partition day and publish summary.json atomically."""
        audit = naming.resource(context)
        day = dt.date.fromisoformat(context.partition_key)
        try:
            store = audit.object_store()
            from audit_pipeline.analysis.summary import summarize_day, write_summary

            summary = summarize_day(store, day, summary_settings(audit))
            key = write_summary(store, summary)
        except AuditPipelineError as exc:
            raise dg.Failure(description=str(exc), allow_retries=isinstance(exc, StorageError)) from None
        context.log.info(f"{day}: {summary.events} events, {summary.failed_logins} failed logins, {summary.new_actor_country_pairs} new actor × country pairs")
        return dg.MaterializeResult(metadata=summary_metadata(summary, store.uri(key)))

    @dg.asset_check(
        asset=summary_asset,
        name="no_spike",
        description=(
            "Warns when the day's failed logins or failure rate exceed the previous days' median by more than "
            "summary.spike_factor × their median absolute deviation, or when new actor × country pairs exceed "
            "summary.new_pairs_threshold. Until summary.min_history_days earlier days are exported it warns "
            "'not evaluated' (with the number of days it has), never a pass."
        ),
        partitions_def=partitions,
        required_resource_keys={naming.resource_key},
    )
    def no_spike(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:  # type: ignore[type-arg]
        audit = naming.resource(context)
        day = dt.date.fromisoformat(context.partition_key)
        try:
            settings = summary_settings(audit)
            from audit_pipeline.analysis.spike import judge
            from audit_pipeline.analysis.summary import read_summary

            verdict = judge(read_summary(audit.object_store(), day), settings)
        except AuditPipelineError as exc:
            raise dg.Failure(description=str(exc)) from None
        return dg.AssetCheckResult(
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=verdict.description,
            metadata={
                "judged": dg.MetadataValue.bool(verdict.judged),
                "findings": dg.MetadataValue.json(verdict.findings),
                "summary": dg.MetadataValue.path(summary_key(day)),
            },
        )

    daily_summary_job = dg.define_asset_job(
        naming.name("daily_summary_job"),
        selection=dg.AssetSelection.assets(summary_asset),
        description="Summarise days already exported (and run no_spike); selects only the summary, so a backfill of it never re-exports.",
    )

    daily_summary_automation = dg.AutomationConditionSensorDefinition(
        naming.name("daily_summary_automation"),
        target=dg.AssetSelection.assets(summary_asset),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Summarises the newest day as soon as its Parquet export is materialized (AutomationCondition.eager).",
    )

    return dg.Definitions(
        assets=[audit_logs_daily_summary],
        asset_checks=[no_spike],
        jobs=[daily_summary_job],
        sensors=[daily_summary_automation],
    )
