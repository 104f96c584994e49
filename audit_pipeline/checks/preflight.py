"""What an export hits first, checked before ``audit-pipeline export-day`` starts a Dagster run.

Dagster (1.13) shows a partition Failed as soon as a run that planned it ends in failure, whatever the run
published: the partition status is the latest *attempt*, read from the instance, not from the store.  A wrong
role, database, port or bucket would so paint a day red whose objects and manifest in the store verify OK.
Checking the source and the export store first (the same checks as ``config check --connect``) turns those
mistakes into one line before any run exists, so the UI keeps showing the day as the store holds it.
"""

from __future__ import annotations

from audit_pipeline.checks.connect import Check, _export_store, _source
from audit_pipeline.config.settings import Settings


def export_preflight(settings: Settings) -> list[Check]:
    """The source and export-store checks that failed (an empty list when an export can start)."""
    return [check for check in (*_source(settings), *_export_store(settings)) if check.status == "FAIL"]
