"""The one resource every definition shares: validated settings and what they open."""

from __future__ import annotations

import json

import dagster as dg
from pydantic import PrivateAttr

from audit_pipeline.config.settings import Settings, load_settings, settings_from_mapping
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.sources.base import AuditSource
from audit_pipeline.sources.registry import open_source
from audit_pipeline.storage.object_store import ObjectStore

#: How errors in a component's settings name where they come from.
SETTINGS_ORIGIN = "defs.yaml (attributes.settings)"

DEMO_WARNING = (
    "no source is configured (no source: section, no AUDIT_DATABASE_URL): this run reads the embedded demo database "
    "of synthetic events; configure source: to read HelloJohn's audit logs"
)


class AuditPipelineResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Settings come from ``AUDIT_*`` variables and the YAML file at run time, never from the UI.

    ``config_path`` overrides ``AUDIT_CONFIG``; ``settings_json`` carries the settings of a component's
    ``defs.yaml`` as written (``${VAR}`` references unresolved), so every run process interpolates and
    validates them itself; secrets stay in the environment either way.  ``environment_overrides`` false: the
    ``AUDIT_*`` variables do not override them (a component with a ``key_prefix``, one of several deployments).
    """

    config_path: str | None = None
    settings_json: str | None = None
    environment_overrides: bool = True
    _settings: Settings | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Say in every run's log when the demo database is read, so demo data is never taken for real data."""
        try:
            settings = self.settings()
        except ConfigError:
            return  # the step that reads the settings fails with the one-line reason
        if settings.uses_demo_source and context.log is not None:
            context.log.warning(DEMO_WARNING)

    def read_settings(self) -> Settings:
        """Read and validate the settings afresh (the component reads them once to build the definitions)."""
        if self.settings_json is not None:
            return settings_from_mapping(json.loads(self.settings_json), SETTINGS_ORIGIN, overrides=self.environment_overrides)
        return load_settings(self.config_path, overrides=self.environment_overrides)

    def settings(self) -> Settings:
        """The settings, read once per resource (a run)."""
        if self._settings is None:
            self._settings = self.read_settings()
        return self._settings

    def open_source(self) -> AuditSource:
        return open_source(self.settings())

    def object_store(self) -> ObjectStore:
        return ObjectStore.from_settings(self.settings().export)
