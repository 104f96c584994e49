"""The names one deployment's definitions take, so that two HelloJohn deployments can share a code location.

Without a prefix (this repository's code location, and a component with no ``key_prefix``) every name is the one the
docs use: ``audit_logs_csv``, ``daily_export_job``, the ``audit`` resource, the ``audit_source`` pool.  With
``key_prefix: eu``, asset keys gain the prefix as their first part (``eu/audit_logs_csv``) and every other name that
must be unique in a code location (jobs, ops, sensors, schedules, pools, the resource key) starts with ``eu__``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import dagster as dg

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.defs.resources import AuditPipelineResource

#: The source table's asset name, which every asset name of a deployment starts with.
SOURCE_NAME = "audit_logs"
#: The resource key of a deployment without a prefix.
RESOURCE_KEY = "audit"
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")


@dataclass(frozen=True)
class Naming:
    """One deployment's names: the base name of each definition, with the deployment's prefix when it has one."""

    prefix: str | None = None

    def __post_init__(self) -> None:
        if self.prefix is not None and (not _PREFIX.fullmatch(self.prefix) or "__" in self.prefix):
            raise ConfigError(
                f"key_prefix: {self.prefix!r} is not a Dagster name part; use a letter, then up to 39 letters, digits or single underscores, e.g. eu"
            )

    def key(self, base: dg.AssetKey) -> dg.AssetKey:
        """An asset key of this deployment (``eu/audit_logs_csv``)."""
        return base.with_prefix(self.prefix) if self.prefix else base

    def name(self, base: str) -> str:
        """A job, op, sensor, schedule or pool name of this deployment (``eu__daily_export_job``)."""
        return f"{self.prefix}__{base}" if self.prefix else base

    def owns(self, key: dg.AssetKey) -> bool:
        """Whether an asset key is this deployment's (every one is named ``audit_logs…``); alerts read every run of the instance."""
        return key.path[:-1] == ([self.prefix] if self.prefix else []) and key.path[-1].startswith(SOURCE_NAME)

    @property
    def resource_key(self) -> str:
        return f"{self.prefix}__{RESOURCE_KEY}" if self.prefix else RESOURCE_KEY

    def resource(self, context: Any) -> AuditPipelineResource:
        """This deployment's settings resource, from any Dagster context that has resources."""
        resource: AuditPipelineResource = getattr(context.resources, self.resource_key)
        return resource


#: A deployment without a prefix: this repository's own code location, and the names the docs use.
UNPREFIXED = Naming()
