"""Definitions built from each test's own settings, never from the developer's ``audit_pipeline.yaml`` or ``AUDIT_*``.

The package builds definitions only in :func:`audit_pipeline.defs.build.build_definitions`; tests call it (or
``build_export_definitions``) with settings they state, so a test's assets do not depend on who runs it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg

from audit_pipeline.config.settings import DEFAULT_PARTITION_START, settings_from_mapping
from audit_pipeline.defs.build import build_definitions
from audit_pipeline.defs.exports import ExportDefinitions, build_export_definitions
from audit_pipeline.defs.partitions import daily_partitions_from

#: The partitions' first day in tests: the settings' default, before every day the tests export.
PARTITION_START = dt.date.fromisoformat(DEFAULT_PARTITION_START)


def export_definitions(start: dt.date = PARTITION_START, source_type: str = "postgres") -> ExportDefinitions:
    """The daily export asset, its checks, job and schedule over partitions from ``start``."""
    return build_export_definitions(daily_partitions_from(start), source_type=source_type)


def export_assets(start: dt.date = PARTITION_START, source_type: str = "postgres") -> list[Any]:
    """What ``dg.materialize`` takes to export a day and run its check pass."""
    built = export_definitions(start, source_type)
    return [built.daily_export, *built.checks]


def definitions_for(sections: dict[str, Any] | None = None) -> dg.Definitions:
    """Every definition, as the code location builds them, for these sections (no environment variables read)."""
    return build_definitions(settings_from_mapping(sections or {}, "test settings", env={}))
