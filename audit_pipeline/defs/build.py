"""Every definition for one deployment's settings, built in one place (the component and the code location call it)."""

from __future__ import annotations

import dagster as dg

from audit_pipeline.config.settings import Settings
from audit_pipeline.defs.adhoc import build_adhoc_job
from audit_pipeline.defs.alerts import build_alerts_sensor
from audit_pipeline.defs.executor import run_executor
from audit_pipeline.defs.exports import build_export_definitions
from audit_pipeline.defs.forwarding import build_forwarding_definitions
from audit_pipeline.defs.integrity import build_integrity_definitions
from audit_pipeline.defs.naming import UNPREFIXED, Naming
from audit_pipeline.defs.partitions import daily_partitions_from
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.defs.retention import build_retention_definitions
from audit_pipeline.defs.security_lake import build_security_lake_definitions
from audit_pipeline.defs.summary import build_summary_definitions


def build_definitions(settings: Settings, resource: AuditPipelineResource | None = None, naming: Naming = UNPREFIXED) -> dg.Definitions:
    """Every definition for these settings, with the shared resource (which re-reads them in each run) and executor.

    ``naming`` prefixes every asset key and name (``key_prefix`` of the component), so that two deployments fit in
    one code location; the executor is set only without a prefix (a code location has one default executor: with
    prefixes, the project's own applies, Dagster's process per step unless it sets another)."""
    partitions = daily_partitions_from(settings.export.partition_start)
    exports = build_export_definitions(partitions, source_type=settings.source_kind, sealed_by_minutes=settings.export.sealed_by_minutes, naming=naming)
    return dg.Definitions.merge(
        exports.definitions(),
        build_integrity_definitions(naming),  # verify_job and its schedules; the integrity checks are in the exports' one check pass
        build_forwarding_definitions(settings, naming),
        build_retention_definitions(naming),
        dg.Definitions(jobs=[build_adhoc_job(naming)]),  # the Launchpad's filtered export (adhoc_export)
        dg.Definitions(sensors=[build_alerts_sensor(naming)]),  # audit_alerts: failed runs and checks, sink lag, dead letters, spikes
        build_summary_definitions(partitions, naming),
        build_security_lake_definitions(settings, partitions, naming),  # audit_logs_ocsf_security_lake, when security_lake.enabled
        # One process per run by default: a backfill's parallelism comes from the run queue and the
        # audit_source pool, not from a process per step (see docs/operations.md);
        # AUDIT_DAGSTER_EXECUTOR=celery sends the steps to Celery workers (docs/scale-out.md).
        dg.Definitions(resources={naming.resource_key: resource or AuditPipelineResource()}, executor=None if naming.prefix else run_executor()),
    )
