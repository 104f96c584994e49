"""The code location: every ``defs`` module merged, plus the shared resource."""

from __future__ import annotations

import dagster as dg

from audit_pipeline.defs import exports, forwarding, integrity, retention
from audit_pipeline.defs.executor import run_executor
from audit_pipeline.defs.resources import AuditPipelineResource

defs = dg.Definitions.merge(
    exports.defs,
    forwarding.defs,
    integrity.defs,
    retention.defs,
    # One process per run by default: a backfill's parallelism comes from the run queue and the
    # audit_source pool, not from a process per step (see docs/operations.md);
    # AUDIT_DAGSTER_EXECUTOR=celery sends the steps to Celery workers (docs/scale-out.md).
    dg.Definitions(resources={"audit": AuditPipelineResource()}, executor=run_executor()),
)
