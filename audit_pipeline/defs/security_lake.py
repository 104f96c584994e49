"""The opt-in OCSF export for Amazon Security Lake: ``audit_logs_ocsf_security_lake`` and its checks.

Built only when ``security_lake.enabled`` is true.  The asset depends on ``audit_logs_parquet`` and reads
that day's Parquet from the export store (never the database); it runs when the day's export is
materialized and its blocking checks passed, like the summary, and a backfill of it alone never
re-exports.
"""

import datetime as dt
import warnings
from collections.abc import Iterator

import dagster as dg

from audit_pipeline.config.settings import Settings
from audit_pipeline.core.errors import AuditPipelineError, StorageError
from audit_pipeline.defs.naming import UNPREFIXED, Naming
from audit_pipeline.exports.daylock import day_lock
from audit_pipeline.integrity.signing import load_signer

SECURITY_LAKE_ASSET = dg.AssetKey("audit_logs_ocsf_security_lake")
PARQUET_ASSET = dg.AssetKey("audit_logs_parquet")
LAYOUT = "{security_lake.url}/ext/{source_name}/region={region}/accountId={account_id}/eventDay=YYYYMMDD/{source_name}_YYYYMMDD.parquet"

_CHECK_TEXT = {
    "rows_add_up": "The row counts of the day's OCSF objects (one per class, each from its own Parquet footer) add up to the row count "
    "the day's Parquet export states in its footer, and to the manifest's.",
    "one_class_per_object": "Each custom source's day folder holds one object whose footer statistics show only that source's class_uid, "
    "with the class's fixed columns, byte for byte what the day's manifest lists.",
}


def build_security_lake_definitions(settings: Settings, partitions: dg.DailyPartitionsDefinition, naming: Naming = UNPREFIXED) -> dg.Definitions:
    """The asset, its checks, a job and an automation sensor; nothing when ``security_lake.enabled`` is false."""
    if not settings.security_lake.enabled:
        return dg.Definitions()
    lake_asset = naming.key(SECURITY_LAKE_ASSET)

    @dg.asset(
        key=lake_asset,
        deps=[naming.key(PARQUET_ASSET)],
        partitions_def=partitions,
        description=(
            "One UTC day of audit events as OCSF (Amazon Security Lake custom sources): one Parquet object per OCSF class, "
            "mapped from that day's Parquet export, with a manifest at manifests/security-lake/eventDay=YYYYMMDD.json."
        ),
        group_name="audit_exports",
        kinds={"parquet", "s3"},
        owners=["team:security-engineering"],
        metadata={"layout": LAYOUT},
        automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        required_resource_keys={naming.resource_key},
    )
    def audit_logs_ocsf_security_lake(context: dg.AssetExecutionContext) -> dg.MaterializeResult:  # type: ignore[type-arg]
        """Map the partition day's Parquet export to OCSF and publish one object per class, then the manifest."""
        audit = naming.resource(context)
        from audit_pipeline.security_lake.export import export_lake_day, lake_store

        day = dt.date.fromisoformat(context.partition_key)
        try:
            config = audit.settings()
            lake = lake_store(config.security_lake)
            signer = load_signer(config.integrity) if config.integrity.enabled else None
            with day_lock(config, day):  # no re-export of the day replaces the Parquet while it is read
                done = export_lake_day(config.security_lake, audit.object_store(), lake, day, signer)
        except AuditPipelineError as exc:
            raise dg.Failure(description=str(exc), allow_retries=isinstance(exc, StorageError)) from None
        objects = done.manifest.objects
        context.log.info(f"{day}: {done.rows} OCSF events in {len(objects)} objects at {lake.uri('')}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": done.rows,
                "rows_per_class": dg.MetadataValue.json({f"{o.class_uid} {o.class_name}": o.rows for o in objects}),
                "objects": dg.MetadataValue.json([{"key": o.key, "rows": o.rows, "bytes": o.bytes, "sha256": o.sha256} for o in objects]),
                "manifest": lake.uri(done.manifest_key),
                "ocsf_version": done.manifest.ocsf_version,
                "signed": done.manifest.signature is not None,
            }
        )

    with warnings.catch_warnings():  # partitioned check specs are "preview" in 1.13
        warnings.simplefilter("ignore", dg.PreviewWarning)
        specs = [dg.AssetCheckSpec(name, asset=lake_asset, description=text, blocking=True, partitions_def=partitions) for name, text in _CHECK_TEXT.items()]

    @dg.multi_asset_check(specs=specs, name=naming.name("audit_logs_ocsf_security_lake_checks"), can_subset=True, required_resource_keys={naming.resource_key})
    def security_lake_checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:  # type: ignore[type-arg]
        """Both checks from the Parquet footers and the manifest: no rows are read."""
        audit = naming.resource(context)
        from audit_pipeline.security_lake.checks import check_lake_day
        from audit_pipeline.security_lake.export import lake_store

        day = dt.date.fromisoformat(context.partition_key)  # type: ignore[arg-type]
        try:
            config = audit.settings()
            verdicts = check_lake_day(config.security_lake, audit.object_store(), lake_store(config.security_lake), day)
        except AuditPipelineError as exc:
            raise dg.Failure(description=str(exc), allow_retries=isinstance(exc, StorageError)) from None
        wanted = {key.name for key in context.selected_asset_check_keys}
        for name, verdict in verdicts.items():
            if name in wanted:
                yield dg.AssetCheckResult(
                    asset_key=lake_asset,
                    check_name=name,
                    passed=verdict.passed,
                    description=verdict.description,
                    metadata={k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v for k, v in verdict.metadata.items()},
                )

    job = dg.define_asset_job(
        naming.name("security_lake_job"),
        selection=dg.AssetSelection.assets(lake_asset),
        description="Write days already exported to Amazon Security Lake as OCSF (and run the checks); never re-exports.",
    )
    sensor = dg.AutomationConditionSensorDefinition(
        naming.name("security_lake_automation"),
        target=dg.AssetSelection.assets(lake_asset),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Writes a day for Security Lake as soon as its Parquet export is materialized and its blocking checks passed.",
    )
    return dg.Definitions(assets=[audit_logs_ocsf_security_lake], asset_checks=[security_lake_checks], jobs=[job], sensors=[sensor])
