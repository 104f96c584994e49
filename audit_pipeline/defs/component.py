"""HelloJohn's audit logs as a Dagster Component, so any ``dg`` project can add them with one ``defs.yaml``.

``dg scaffold defs audit_pipeline.defs.AuditLogs audit_logs`` writes a ``defs.yaml`` whose ``attributes.settings``
takes exactly the sections of ``audit_pipeline.yaml`` (one typed model: ``config check``, the code location and
the component report the same one-line errors), or ``attributes.config_file`` names such a file.  Secrets stay
``${VAR}`` references: they are resolved in each process from its environment, never written into the run's
configuration (Dagster's own ``{{ env.VAR }}`` would resolve them into it; do not use it for secrets).

This repository's own code location (``audit_pipeline.definitions``) is this component with no attributes: the
settings then come from ``AUDIT_CONFIG`` / ``./audit_pipeline.yaml`` and the ``AUDIT_*`` variables, as always.
"""

# No `from __future__ import annotations`: Dagster derives the YAML schema from the real annotations.
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from audit_pipeline.config.settings import Settings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.defs.build import build_definitions
from audit_pipeline.defs.naming import Naming
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.sinks.registry import sink_sections


class ConfigurationNotLoaded(Exception):
    """The configuration could not be read; the message says which key and how to fix it."""


#: What `dg scaffold defs` writes: PostgreSQL through ${AUDIT_DATABASE_URL}, exports to a local folder; edit both.
SCAFFOLDED_SETTINGS: dict[str, Any] = {
    "source": {"type": "postgres", "database_url": "${AUDIT_DATABASE_URL}"},
    "export": {"url": "audit-exports", "partition_start": "2024-01-01"},
}


class AuditLogsScaffolder(dg.Scaffolder):  # type: ignore[type-arg]
    """A ``defs.yaml`` that loads as written once ``AUDIT_DATABASE_URL`` is set (not an empty one that reads the demo)."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:  # type: ignore[type-arg]
        dg.scaffold_component(request, {"settings": SCAFFOLDED_SETTINGS})


@dg.scaffold_with(AuditLogsScaffolder)
@dataclass
class AuditLogs(dg.Component, dg.Resolvable):
    """HelloJohn's audit logs: daily CSV/NDJSON/Parquet exports with their checks, forwarding sensors for each
    configured sink, verification, retention and the daily summary, from the settings given here.

    Attributes:
        settings: the sections of audit_pipeline.yaml (source, export, sinks, forwarding, retention, integrity,
            summary); secrets as ``${VAR}``. See docs/configuration.md.
        config_file: a path to an audit_pipeline.yaml, relative to this defs.yaml's folder (instead of settings).
        key_prefix: a name for this deployment (e.g. ``eu``) when the code location holds more than one: asset keys
            become ``eu/audit_logs_csv`` and jobs, sensors, schedules, pools and the resource ``eu__daily_export_job``,
            ``eu__audit_source``, ``eu__audit``. Each deployment needs its own export store and state database.
    """

    settings: dict[str, Any] | None = None
    config_file: str | None = None
    key_prefix: str | None = None

    def resource(self, base_dir: Path | None = None) -> AuditPipelineResource:
        """The resource every run process rebuilds its settings from (never resolved secrets)."""
        if self.settings is not None and self.config_file is not None:
            raise ConfigError("defs.yaml: set attributes.settings or attributes.config_file, not both")
        # With a prefix the settings are this deployment's alone: AUDIT_EXPORT_URL and the like would give every
        # deployment of the process the same store; ${VAR} references are still resolved.
        overrides = self.key_prefix is None
        if self.settings is not None:
            return AuditPipelineResource(settings_json=json.dumps(self.settings, default=str, sort_keys=True), environment_overrides=overrides)
        if self.config_file is not None:
            path = Path(self.config_file)
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            return AuditPipelineResource(config_path=str(path.resolve()), environment_overrides=overrides)
        if not overrides:
            raise ConfigError(f"defs.yaml: key_prefix {self.key_prefix} needs this deployment's own attributes.settings or attributes.config_file")
        return AuditPipelineResource()

    def settings_and_resource(self, base_dir: Path | None = None) -> tuple[Settings, AuditPipelineResource]:
        """The validated settings (for building the definitions) and the resource that re-reads them at run time."""
        resource = self.resource(base_dir)
        return resource.read_settings(), resource

    def build_definitions(self, base_dir: Path | None = None) -> dg.Definitions:
        """Every definition, or a load error whose message names the key at fault and how to fix it."""
        try:
            naming = Naming(self.key_prefix)
            settings, resource = self.settings_and_resource(base_dir)
            if naming.prefix and not settings.state_url and (any(sink_sections(settings)) or settings.alerts.enabled):
                raise ConfigError(
                    f"defs.yaml: key_prefix {naming.prefix} with sinks or alerts needs its own state_url (sink positions, leases and "
                    "alerts sent are kept there; the default .audit_pipeline/state.db would be shared with another deployment)"
                )
            return build_definitions(settings, resource, naming)
        except ConfigError as exc:
            # Raised from here, not from deep inside: the UI and `dg check defs` show this message as the load error.
            raise ConfigurationNotLoaded(f"the audit_pipeline configuration is invalid, fix it and reload the code location: {exc}") from None

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return self.build_definitions(context.path)
