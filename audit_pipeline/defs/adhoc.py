"""The dashboard's "apply filters → Export" in the Dagster UI: the ``adhoc_export`` job, launched from the Launchpad.

Its run config is typed (range, event-type and tenant globs, organizations, format); it reads the request with the
same parser as ``audit-pipeline export`` and writes the same bytes, under the export store's ``adhoc/`` prefix, named
after the run, and records the object's link, row count and SHA-256 in the run's metadata.
"""

# No `from __future__ import annotations`: Dagster reads the op's config class from the real annotation.

import dagster as dg
from pydantic import Field

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.defs.naming import UNPREFIXED, Naming
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.exports.adhoc_request import parse_range_request
from audit_pipeline.exports.adhoc_store import export_range_to_store

_NAMES = {"from": "start", "to": "end", "type": "types", "tenant": "tenants", "organization": "organizations", "format": "format"}


class AdhocExportConfig(dg.Config):
    """What ``audit-pipeline export`` takes on its command line, as the Launchpad's form."""

    start: str = Field(description="Start, inclusive: ISO 8601 with an offset or Z, e.g. 2024-01-01T00:00:00Z.")
    end: str = Field(description="End, exclusive: events strictly before it (2024-02-01T00:00:00Z for all of January).")
    types: list[str] = Field(default_factory=list, description="Event types or globs, e.g. user.login or user.*; empty for all.")
    tenants: list[str] = Field(default_factory=list, description="Tenant ids or globs; empty for all.")
    organizations: list[str] = Field(default_factory=list, description="Organization ids; empty for all.")
    format: str = Field(default="csv", description="csv, ndjson (or json) or parquet.")


def export_range(context: dg.OpExecutionContext, config: AdhocExportConfig, audit: AuditPipelineResource) -> None:  # type: ignore[type-arg]
    """Export the events of [start, end) matching the filters into the export store's adhoc/ prefix."""
    try:
        request = parse_range_request(
            config.start, config.end, fmt=config.format, types=config.types, tenants=config.tenants, organizations=config.organizations, names=_NAMES
        )
        settings = audit.settings()
    except ConfigError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    with audit.open_source() as source:
        source.check()
        stored = export_range_to_store(source, audit.object_store(), request, context.run_id, settings.export)
    context.log.info(f"exported {stored.rows:,} events to {stored.uri}")
    context.add_output_metadata(
        {
            "uri": dg.MetadataValue.url(stored.uri) if "://" in stored.uri else dg.MetadataValue.path(stored.uri),
            "rows": dg.MetadataValue.int(stored.rows),
            "bytes": dg.MetadataValue.int(stored.bytes),
            "sha256": dg.MetadataValue.text(stored.sha256),
        }
    )


def build_adhoc_job(naming: Naming = UNPREFIXED) -> dg.JobDefinition:
    """The ``adhoc_export`` job, named for one deployment."""

    @dg.op(
        name=naming.name("export_range"),
        description="Export the events of [start, end) matching the filters into the export store's adhoc/ prefix.",
        required_resource_keys={naming.resource_key},
    )
    def export_range_op(context: dg.OpExecutionContext, config: AdhocExportConfig) -> None:  # type: ignore[type-arg]
        export_range(context, config, naming.resource(context))

    @dg.job(name=naming.name("adhoc_export"), description="An auditor's export of any range and filters, written under the export store's adhoc/ prefix.")
    def adhoc_export_job() -> None:
        export_range_op()

    return adhoc_export_job


#: This repository's own names (tests run the job in process).
adhoc_export_job = build_adhoc_job()
