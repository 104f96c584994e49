"""The one resource every definition shares: validated settings and what they open."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from audit_pipeline.errors import ConfigError
from audit_pipeline.settings import Settings, load_settings
from audit_pipeline.sources import AuditSource, open_source
from audit_pipeline.storage import ObjectStore

DEMO_WARNING = (
    "no source is configured (no source: section, no AUDIT_DATABASE_URL): this run reads the embedded demo database "
    "of synthetic events; configure source: to read HelloJohn's audit logs"
)


class AuditPipelineResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Settings come from ``AUDIT_*`` variables and the YAML file at run time, never from the UI.

    ``config_path`` overrides ``AUDIT_CONFIG``; secrets stay in the environment.
    """

    config_path: str | None = None
    _settings: Settings | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Say in every run's log when the demo database is read, so demo data is never taken for real data."""
        try:
            settings = self.settings()
        except ConfigError:
            return  # the step that reads the settings fails with the one-line reason
        if settings.uses_demo_source and context.log is not None:
            context.log.warning(DEMO_WARNING)

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    def open_source(self) -> AuditSource:
        return open_source(self.settings())

    def object_store(self) -> ObjectStore:
        return ObjectStore.from_settings(self.settings().export)
