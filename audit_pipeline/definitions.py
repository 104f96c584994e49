"""The code location: every ``defs`` module merged, plus the shared resource."""

from __future__ import annotations

import dagster as dg

from audit_pipeline.defs import exports, forwarding, integrity
from audit_pipeline.defs.resources import AuditPipelineResource

defs = dg.Definitions.merge(
    exports.defs,
    forwarding.defs,
    integrity.defs,
    dg.Definitions(resources={"audit": AuditPipelineResource()}),
)
