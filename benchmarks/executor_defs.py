"""The code location as it was before runs used the in-process executor: one process per step.

Only :mod:`benchmarks.executor_bench` loads it, as the baseline.
"""

import dagster as dg

from audit_pipeline.config.settings import load_settings
from audit_pipeline.defs import integrity
from audit_pipeline.defs.exports import build_export_definitions
from audit_pipeline.defs.partitions import daily_partitions_from
from audit_pipeline.defs.resources import AuditPipelineResource

defs = dg.Definitions.merge(
    build_export_definitions(daily_partitions_from(load_settings().export.partition_start)).definitions(),
    integrity.build_integrity_definitions(),
    dg.Definitions(resources={"audit": AuditPipelineResource()}, executor=dg.multiprocess_executor),
)
