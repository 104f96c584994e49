"""A year's backfill on one machine, as the production profile runs it.

The backfills are launched with the UI's GraphQL mutation.  Dagster's own backfill daemon turns
them into runs (one per partition day: ``BackfillPolicy.multi_run(1)``), its queued-run daemon
starts them within deploy/dagster.yaml's limits, and runs and events are stored in PostgreSQL.
Only the launcher differs from production: started runs go to two worker processes (this
machine's two cores) that execute them as a launched run worker would (see ``handoff.py``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import logging
import multiprocessing
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget, create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql

from audit_pipeline.defs.exports import EXPORT_ASSETS, EXPORT_POOL
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.built_defs import definitions_for
from audit_pipeline_tests.operations.handoff import HandOffRunLauncher, execute_in_worker, pooled_storage

YEAR = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(365)]  # 2024-01-01 … 2024-12-30
LOG = logging.getLogger("backfill-test")
BACKFILL_DEADLINE_SECONDS = 1_800  # one backfill takes minutes; a stuck daemon loop fails here, not at the suite timeout
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
CHECKS = ("complete", "schema", "integrity")


def events_on(index: int) -> int:
    return index % 4  # 0–3 events a day: a quarter of the days have none


@pytest.fixture
def year_of_events(pg, workdir, monkeypatch):
    pg.insert(itertools.chain.from_iterable(generate_events(day, events_on(i)) for i, day in enumerate(YEAR)))
    monkeypatch.setenv("AUDIT_DATABASE_URL", pg.readonly_url)
    monkeypatch.setenv("AUDIT_EXPORT_URL", str(workdir / "exports"))
    return workdir / "exports"


@pytest.fixture
def workers(production_home, year_of_events):
    """Two run workers, started after the environment is set so that they inherit it."""
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _workspace(instance: dg.DagsterInstance, workdir: Path):
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name="audit_pipeline.definitions", working_directory=str(workdir)),
        location_name="audit_pipeline",
    )
    return create_test_daemon_workspace_context(InProcessTestWorkspaceLoadTarget(origin), instance)


def launch_backfill(context: WorkspaceProcessContext, days: list[dt.date], title: str) -> str:
    """The UI's "Materialize → backfill" of the three export assets, as the GraphQL mutation it sends."""
    params = {
        "partitionNames": [d.isoformat() for d in days],
        "assetSelection": [{"path": [key.to_user_string()]} for key in EXPORT_ASSETS.values()],
        "title": title,
    }
    result = execute_dagster_graphql(context.create_request_context(), LAUNCH_PARTITION_BACKFILL_MUTATION, {"backfillParams": params})
    launched = result.data["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def set_pool_limit(home: Path, pool: str, limit: int) -> None:
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(dagster), "instance", "concurrency", "set", pool, str(limit)],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def drive(context: WorkspaceProcessContext, home: Path, workers: ProcessPoolExecutor, backfill_ids: list[str]) -> int:
    """Play the backfill and run-queue daemons and hand started runs to the workers until the backfills end.

    Returns the most runs that were ever in progress at once, counted as the queue counts them;
    fails as soon as two runs of the same day are in progress together.
    """
    instance = context.instance
    launcher = instance.run_launcher
    assert isinstance(launcher, HandOffRunLauncher)
    coordinator = QueuedRunCoordinatorDaemon(interval_seconds=1)
    running: set[Future[str]] = set()
    most = 0
    deadline = time.monotonic() + BACKFILL_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if not running and not instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED])):
            list(execute_backfill_iteration(context, LOG))  # submits the runs, or closes finished backfills
            if all(instance.get_backfill(b).status != BulkActionStatus.REQUESTED for b in backfill_ids):
                return most
        list(coordinator.run_iteration(context))
        running |= {workers.submit(execute_in_worker, str(home), run_id) for run_id in launcher.take()}
        in_progress = [run.tags.get("dagster/partition") for run in instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS))]
        assert len(set(in_progress)) == len(in_progress), f"one day exported twice at once: {sorted(in_progress)}"
        most = max(most, len(in_progress))
        if running:
            done, running = wait(running, timeout=60, return_when=FIRST_COMPLETED)
            for future in done:
                assert future.result() == "SUCCESS"
    raise AssertionError(f"the backfills did not finish within {BACKFILL_DEADLINE_SECONDS} s")


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file() and ".staging" not in p.parts}


def failed_checks(instance: dg.DagsterInstance, days: list[dt.date]) -> list[tuple[str, str, str, str]]:
    """Every (asset, check, day) whose latest evaluation did not pass on the latest materialization."""
    keys = [k for k in definitions_for().get_repository_def().asset_graph.asset_check_keys if k.asset_key in EXPORT_ASSETS.values()]
    assert {k.name for k in keys} == set(CHECKS)
    latest = {(i.check_key, i.partition_key): i for i in instance.event_log_storage.get_asset_check_partition_info(keys)}
    failed = []
    for key in keys:
        for day in days:
            info = latest.get((key, day.isoformat()))
            if info is None or info.latest_execution_status != AssetCheckExecutionRecordStatus.SUCCEEDED or not info.is_current:
                failed.append((key.asset_key.to_user_string(), key.name, day.isoformat(), "missing" if info is None else info.latest_execution_status.value))
    return failed


def recheck_integrity(instance: dg.DagsterInstance, failed: list[tuple[str, str, str, str]]) -> None:
    """Re-run the given integrity checks, as an operator does from an asset's Checks tab.

    Two neighbouring days exported side by side can publish out of order: the later day is then
    sealed before its previous day exists, and its integrity check fails with WARN severity
    ("not linked yet") until it runs again after the previous day's export re-linked it.  Only
    that check may need a second evaluation; any other failure fails the test.
    """
    assert {check for _, check, _, _ in failed} <= {"integrity"}, failed
    job = definitions_for().resolve_implicit_global_asset_job_def()
    for asset, check, day, _ in failed:
        subset = job.get_subset(asset_selection=set(), asset_check_selection={dg.AssetCheckKey(dg.AssetKey(asset), check)})
        assert subset.execute_in_process(partition_key=day, instance=instance).success


@pytest.mark.slow
@pytest.mark.timeout(2400)  # 365 runs: minutes, beyond the suite's default per-test limit
def test_a_year_backfills_within_the_pool_limit_and_reruns_idempotently(production_home, year_of_events, workers, workdir):
    exports = year_of_events
    with dg.DagsterInstance.from_config(str(production_home)) as instance, _workspace(pooled_storage(instance), workdir) as context:
        concurrency = instance.get_concurrency_config()
        pool_limit = concurrency.pool_config.default_pool_limit
        assert concurrency.run_queue_config is not None
        assert pool_limit == 4 and concurrency.run_queue_config.tag_concurrency_limits[0]["limit"] == 4

        # The deployment step of the README: the pool's limit exists before the first run is queued
        # (a default_limit alone takes effect from the queue's second pass).
        set_pool_limit(production_home, EXPORT_POOL, pool_limit)

        # Two backfills at once (the year's halves): the per-backfill tag limit alone would let 8 runs
        # start; the audit_source pool keeps it to 4 runs reading the audit database.
        halves = [launch_backfill(context, YEAR[:182], "2024 H1"), launch_backfill(context, YEAR[182:], "2024 H2")]
        most_in_progress = drive(context, production_home, workers, halves)

        assert most_in_progress == pool_limit
        runs = instance.get_runs()
        assert len(runs) == 365
        assert Counter(r.status for r in runs) == {dg.DagsterRunStatus.SUCCESS: 365}
        assert sorted(r.tags["dagster/partition"] for r in runs)  # one day per run, tagged, so checks are per day == [d.isoformat() for d in YEAR]
        assert all(EXPORT_POOL in (r.run_op_concurrency.all_pools or ()) for r in runs if r.run_op_concurrency)
        assert [instance.get_backfill(b).status for b in halves] == [BulkActionStatus.COMPLETED_SUCCESS] * 2

        for key in EXPORT_ASSETS.values():
            assert instance.get_materialized_partitions(key) == {d.isoformat() for d in YEAR}
        recheck_integrity(instance, [("audit_logs_csv", "integrity", YEAR[0].isoformat(), "")])  # the remedy works
        recheck_integrity(instance, failed_checks(instance, YEAR))
        assert failed_checks(instance, YEAR) == []

        # Per-partition metadata, numeric, one point per day (what the UI plots over time).
        rows = {}
        for record in instance.fetch_materializations(EXPORT_ASSETS["csv"], limit=1000).records:
            materialization = record.asset_materialization
            assert materialization is not None and materialization.partition is not None
            rows[materialization.partition] = materialization.metadata["dagster/row_count"].value
            assert isinstance(materialization.metadata["bytes"].value, int) and materialization.metadata["bytes"].value > 0
        assert rows == {d.isoformat(): events_on(i) for i, d in enumerate(YEAR)}

        before = tree_digest(exports)
        assert sum(1 for key in before if key.startswith("csv/")) == 365
        assert sum(1 for key in before if key.startswith("manifests/date=")) == 365

        # Re-run a fortnight across both halves: the same objects and manifests, the checks pass again.
        window = YEAR[175:189]
        again = launch_backfill(context, window, "re-run")
        drive(context, production_home, workers, [again])
        assert instance.get_backfill(again).status == BulkActionStatus.COMPLETED_SUCCESS
        # The same three days twice at once (two operators): the pool would start all six runs, the
        # per-day limit holds the second run of each day back until the first has finished.
        twice = [launch_backfill(context, window[:3], "once"), launch_backfill(context, window[:3], "twice")]
        drive(context, production_home, workers, twice)
        assert [instance.get_backfill(b).status for b in twice] == [BulkActionStatus.COMPLETED_SUCCESS] * 2
        assert tree_digest(exports) == before
        assert failed_checks(instance, YEAR) == []
        rerun = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=EXPORT_ASSETS["ndjson"], asset_partitions=[window[0].isoformat()]), limit=10)
        assert len(rerun.records) == 4
