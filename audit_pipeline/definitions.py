"""The code location: the :class:`~audit_pipeline.defs.component.AuditLogs` component with no attributes, so the
settings come from ``AUDIT_CONFIG`` / ``./audit_pipeline.yaml`` and the ``AUDIT_*`` variables; partitions start at
``export.partition_start``, sinks are the configured ones, and a broken configuration fails the load with its
one-line reason."""

from __future__ import annotations

import dagster as dg

from audit_pipeline.core.memory import freeze_loaded_objects
from audit_pipeline.defs.component import AuditLogs
from audit_pipeline.defs.launch_errors import install as install_launch_errors

__all__ = ["defs", "load_definitions"]


def load_definitions() -> dg.Definitions:
    """The definitions for ``AUDIT_CONFIG`` / ``./audit_pipeline.yaml`` and the ``AUDIT_*`` variables."""
    return AuditLogs().build_definitions()


install_launch_errors()  # `dg launch --partition` of a day that is no partition: one line, as `export-day` says it
defs = load_definitions()
freeze_loaded_objects()  # Dagster, the libraries and these definitions live as long as the process
