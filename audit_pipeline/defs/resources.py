"""The one resource every definition shares: validated settings and what they open."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from audit_pipeline.settings import Settings, load_settings
from audit_pipeline.sources import AuditSource, open_source
from audit_pipeline.storage import ObjectStore


class AuditPipelineResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Settings come from ``AUDIT_*`` variables and the YAML file at run time, never from the UI.

    ``config_path`` overrides ``AUDIT_CONFIG``; secrets stay in the environment.
    """

    config_path: str | None = None
    _settings: Settings | None = PrivateAttr(default=None)

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    def open_source(self) -> AuditSource:
        return open_source(self.settings())

    def object_store(self) -> ObjectStore:
        return ObjectStore.from_settings(self.settings().export)
