"""The code location as it was before runs used the in-process executor: one process per step.

Only :mod:`benchmarks.executor_bench` loads it, as the baseline.
"""

import dagster as dg

from audit_pipeline.defs import exports, integrity
from audit_pipeline.defs.resources import AuditPipelineResource

defs = dg.Definitions.merge(
    exports.defs,
    integrity.defs,
    dg.Definitions(resources={"audit": AuditPipelineResource()}, executor=dg.multiprocess_executor),
)
