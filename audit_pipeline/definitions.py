"""The code location, built from the loaded settings: partitions start at ``export.partition_start``,
sinks are the configured ones, and a broken configuration fails the load with its one-line reason."""

from __future__ import annotations

import dagster as dg

from audit_pipeline.defs import integrity, retention
from audit_pipeline.defs.executor import run_executor
from audit_pipeline.defs.exports import build_export_definitions
from audit_pipeline.defs.forwarding import build_forwarding_definitions
from audit_pipeline.defs.partitions import daily_partitions_from
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.defs.summary import build_summary_definitions
from audit_pipeline.errors import ConfigError
from audit_pipeline.memory import freeze_loaded_objects
from audit_pipeline.settings import Settings, load_settings


class ConfigurationNotLoaded(Exception):
    """The configuration could not be read; the message says which key and how to fix it."""


def build_definitions(settings: Settings) -> dg.Definitions:
    """Every definition for these settings, with the shared resource and executor."""
    partitions = daily_partitions_from(settings.export.partition_start)
    exports = build_export_definitions(partitions, source_type=settings.source_kind)
    return dg.Definitions.merge(
        exports.definitions(),
        integrity.defs,  # verify_job and its schedules; the integrity checks are in the exports' one check pass
        build_forwarding_definitions(settings),
        retention.defs,
        build_summary_definitions(partitions),
        # One process per run by default: a backfill's parallelism comes from the run queue and the
        # audit_source pool, not from a process per step (see docs/operations.md);
        # AUDIT_DAGSTER_EXECUTOR=celery sends the steps to Celery workers (docs/scale-out.md).
        dg.Definitions(resources={"audit": AuditPipelineResource()}, executor=run_executor()),
    )


def load_definitions() -> dg.Definitions:
    """The definitions for ``AUDIT_CONFIG`` / ``./audit_pipeline.yaml`` and the ``AUDIT_*`` variables."""
    try:
        return build_definitions(load_settings())
    except ConfigError as exc:
        # Raised from here, not from deep inside: the UI shows this message as the load error.
        raise ConfigurationNotLoaded(f"the audit_pipeline configuration is invalid, fix it and reload the code location: {exc}") from None


defs = load_definitions()
freeze_loaded_objects()  # Dagster, the libraries and these definitions live as long as the process
