"""Where a run's steps execute: in the run's own process (default) or on Celery workers (scale-out).

``AUDIT_DAGSTER_EXECUTOR`` chooses, read when the definitions load (like ``AUDIT_PARTITION_START``),
so the code server, every run and every worker must see the same value:

- ``in_process`` (default): one process per run; a backfill's parallelism comes from the run
  queue (see "Operating it" in the README).
- ``celery``: the run's process only orchestrates; each step (the day's export, its check pass) is a
  Celery task taken by whichever worker host is free, through the broker in
  ``DAGSTER_CELERY_BROKER_URL`` (deploy/celery/, docs/scale-out.md).  The run queue still decides
  how many runs (so how many exports) proceed at once.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from audit_pipeline.core.errors import ConfigError

EXECUTOR_SETTING = "AUDIT_DAGSTER_EXECUTOR"
BROKER_SETTING = "DAGSTER_CELERY_BROKER_URL"

#: The Celery app settings of the runs; deploy/celery/celery.yaml gives the workers the same (a test keeps them equal).
CELERY_APP_SETTINGS: dict[str, Any] = {
    # A task is acknowledged when it has finished, not when a worker received it: a worker
    # killed mid-step leaves its task unacknowledged, and the broker hands it to another worker.
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    # One task reserved per worker process: steps spread over idle hosts instead of queueing behind a busy one.
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": True,
    # Detect a broker connection lost with its host within a minute.
    "broker_heartbeat": 30,
}


def celery_executor_config() -> dict[str, Any]:
    """The executor's config block, as ``dagster-celery worker start -y`` reads it under ``execution.config``."""
    return {"broker": {"env": BROKER_SETTING}, "backend": "rpc://", "config_source": dict(CELERY_APP_SETTINGS)}


def run_executor() -> dg.ExecutorDefinition:
    choice = os.environ.get(EXECUTOR_SETTING) or "in_process"
    if choice == "in_process":
        return dg.in_process_executor
    if choice != "celery":
        raise ConfigError(f"{EXECUTOR_SETTING}={choice!r}: use in_process (the default) or celery")
    try:
        from dagster_celery import celery_executor
    except ImportError:
        raise ConfigError(f"{EXECUTOR_SETTING}=celery needs the celery extra: pip install 'audit_pipeline[celery]'") from None
    if not os.environ.get(BROKER_SETTING):
        raise ConfigError(f"{EXECUTOR_SETTING}=celery needs {BROKER_SETTING}, the broker URL (e.g. pyamqp://user:password@rabbitmq:5672/audit)")
    return celery_executor.configured(celery_executor_config(), name="celery")
