"""Dagster declarations: thin wrappers that call the core modules; :class:`AuditLogs` is the Component other
``dg`` projects add (``dg scaffold defs audit_pipeline.defs.AuditLogs audit_logs``).

Partitioned asset checks (one result per day) are "preview" in Dagster 1.13 and it warns each time one is
declared; that one warning, by its text, is silenced here where the Dagster layer loads, so no documented command
prints it (docs/operations.md says so). Every other warning still shows.
"""

import warnings

import dagster as dg

warnings.filterwarnings("ignore", message=r"Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)

from audit_pipeline.defs.component import AuditLogs  # noqa: E402  (after the filter: building the checks warns)

__all__ = ["AuditLogs"]
