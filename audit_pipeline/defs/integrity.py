"""Per-partition integrity checks: the verification of ``audit-pipeline verify``, one day and one format.

Each export asset gets an ``integrity`` check: the day's manifest is present and validly
signed, links to the previous day, and the asset's object matches it (SHA-256 and the entry
chain recomputed from the object).  A day whose only problem is its link to a previous day
that is not exported yet (a backfill running out of order) fails with WARN severity; the
previous day's export re-links it.
"""

import datetime as dt

import dagster as dg

from audit_pipeline.defs.exports import EXPORT_ASSETS
from audit_pipeline.defs.partitions import daily_partitions
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.integrity.config import integrity_settings
from audit_pipeline.integrity.manifest import manifest_key
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.integrity.verify import Verifier


def integrity_result(audit: AuditPipelineResource, fmt: str, day: dt.date) -> dg.AssetCheckResult:
    """The check's verdict for one format of one day (what the UI shows for the partition)."""
    config = integrity_settings(audit.settings())
    if not config.enabled:
        return dg.AssetCheckResult(passed=True, description="integrity.enabled is false: no manifests are written", metadata={"status": "disabled"})
    report = Verifier(audit.object_store(), Keyring.build(config), formats=(fmt,)).verify_day(day)
    return dg.AssetCheckResult(
        passed=report.ok,
        severity=dg.AssetCheckSeverity.WARN if report.only_link_problems else dg.AssetCheckSeverity.ERROR,
        description="; ".join(p.message for p in report.problems) or "; ".join(report.notes) or None,
        metadata={
            "status": report.status,
            "manifest": manifest_key(day),
            "events": report.rows if report.rows is not None else -1,
            "problems": dg.MetadataValue.json([{"kind": p.kind, "message": p.message} for p in report.problems]),
            "notes": dg.MetadataValue.json(report.notes),
        },
    )


def _build_check(fmt: str, key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=key,
        name="integrity",
        description=(
            f"The day's manifest is signed and chained to the previous day, and the {fmt.upper()} object matches it: "
            "SHA-256 and the entry hash chain recomputed from its rows."
        ),
        partitions_def=daily_partitions,
    )
    def integrity(context: dg.AssetCheckExecutionContext, audit: AuditPipelineResource) -> dg.AssetCheckResult:  # type: ignore[type-arg]
        return integrity_result(audit, fmt, dt.date.fromisoformat(context.partition_key))

    return integrity


integrity_checks = [_build_check(fmt, key) for fmt, key in EXPORT_ASSETS.items()]

defs = dg.Definitions(asset_checks=integrity_checks)
