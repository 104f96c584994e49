"""A run launcher that hands launched runs to the test, which plays the machine's run workers.

Dagster's queued-run daemon decides *when* a run may start (run queue, tag limits, pools);
the launcher only decides *where*.  Here "where" is a pool of worker processes owned by the
test: each executes a run exactly as ``dagster api execute_run`` does in a launched process
(:func:`execute_in_worker`), but a worker is started once and reused, so that a 365-run
backfill does not pay an interpreter start and a code-location import per run.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster._core.execution.api import execute_run
from dagster._core.launcher import LaunchRunContext, RunLauncher
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster._utils.hosted_user_process import recon_job_from_origin


class HandOffRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        self.pending: list[str] = []
        self.launched = 0
        super().__init__()

    def launch_run(self, context: LaunchRunContext) -> None:
        self.pending.append(context.dagster_run.run_id)
        self.launched += 1

    def take(self) -> list[str]:
        taken, self.pending = self.pending, []
        return taken

    def terminate(self, run_id: str) -> bool:
        return False

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Any) -> HandOffRunLauncher:
        return cls(inst_data=inst_data)


_worker_instance: dg.DagsterInstance | None = None


def pooled_storage(instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """Keep storage connections open (as the webserver does) instead of one per statement: test speed only."""
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=4)
    return instance


def execute_in_worker(dagster_home: str, run_id: str) -> str:
    """Run one launched run to its end in this worker process; return its final status."""
    global _worker_instance
    if _worker_instance is None:
        _worker_instance = pooled_storage(dg.DagsterInstance.from_config(dagster_home))
    run = _worker_instance.get_run_by_id(run_id)
    assert run is not None and run.job_code_origin is not None
    execute_run(recon_job_from_origin(run.job_code_origin), run, _worker_instance)
    done = _worker_instance.get_run_by_id(run_id)
    assert done is not None
    return done.status.value
