"""A 30-day backfill spread over three Celery worker hosts, one of them killed mid-day.

The hosts are network namespaces on this machine (``celery_hosts.py``); the backfill is launched
through the webserver's GraphQL API over HTTP, Dagster's daemon queues and starts the runs under
deploy/celery/dagster.yaml, and every step runs on whichever worker takes it from RabbitMQ.  While
the backfill runs, one worker host is killed with SIGKILL in the middle of a day's export (the
test holds a lock on the audit table, so the export is caught reading its day); that day must have
nothing published, its step must be finished by another worker, and in the end every day must be
exported exactly once, pass its checks, and be byte-identical to a single-host export.

``AUDIT_TEST_CELERY_DAYS`` (default 30) shortens the backfill for a quick look.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION

from audit_pipeline.defs.exports import EXPORT_ASSETS, EXPORT_POOL
from audit_pipeline.integrity.manifest import HEAD_KEY, MANIFEST_PREFIX
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage import ObjectStore
from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.operations.celery_hosts import BIN, CeleryDeployment, HostsUnavailable, celery_deployment
from audit_pipeline_tests.operations.test_backfill import failed_checks, recheck_integrity

pytestmark = pytest.mark.slow

DAYS = [dt.date(2024, 3, 1) + dt.timedelta(days=i) for i in range(int(os.environ.get("AUDIT_TEST_CELERY_DAYS", "30")))]
WORKERS = 3
EXPORT_STEP = "audit_logs_daily_export"
BACKFILL_TAG = "dagster/backfill"  # the tag Dagster puts on every run a backfill launches


def events_on(index: int) -> int:
    return 40 + 13 * (index % 7)


@pytest.fixture
def deployment(tmp_path: Path):
    try:
        with celery_deployment(WORKERS, tmp_path / "cluster", pool_limit=WORKERS) as built:
            yield built
    except HostsUnavailable as reason:
        pytest.skip(f"cannot build worker hosts in network namespaces here: {reason}")


@pytest.fixture
def instance(deployment: CeleryDeployment, monkeypatch: pytest.MonkeyPatch):
    """The deployment's Dagster instance, seen from the test (and its settings, for re-running a check as an operator)."""
    for key, value in deployment.env.items():
        if key not in ("AUDIT_DAGSTER_EXECUTOR", "DAGSTER_CELERY_BROKER_URL", "PATH"):
            monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(deployment.home)) as opened:
        yield opened


def export_attempts(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    """(day, Celery worker) of every export step a worker began, from the engine events dagster-celery records."""
    attempts = []
    for run in instance.get_runs():
        if "dagster/partition" not in run.tags:  # a scheduled job the daemon ran meanwhile, not an export
            continue
        for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            event = record.dagster_event
            if event is None or event.step_key != EXPORT_STEP or "in celery worker" not in (event.message or ""):
                continue
            worker = event.engine_event_data.metadata["Celery worker"].value
            attempts.append((run.tags["dagster/partition"], str(worker)))
    return attempts


def materialized_days(instance: dg.DagsterInstance) -> set[str]:
    return set(instance.get_materialized_partitions(EXPORT_ASSETS["csv"]))


def wait_for(condition: Any, what: str, timeout: float, interval: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(interval)


def activity(deployment: CeleryDeployment, address: str) -> tuple[str | None, bool]:
    """(day whose export lock the host holds, whether it waits on the audit table)."""
    with psycopg.connect(deployment.postgres.url(), autocommit=True) as state, psycopg.connect(deployment.source_server.url(), autocommit=True) as source:
        held = exports_in_progress(state).get(address)
        waiting = source.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'hellojohn' AND client_addr = %s::inet AND wait_event_type = 'Lock'", (address,)
        ).fetchone()
    return held, bool(waiting and waiting[0])


def exports_in_progress(state: psycopg.Connection[Any]) -> dict[str, str]:
    """Host address -> the day whose export lock it holds."""
    rows = state.execute(
        "SELECT host(a.client_addr), a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND a.client_addr IS NOT NULL"
    ).fetchall()
    return {address: name.split()[2] for address, name in rows}  # "audit_pipeline export YYYY-MM-DD host pid N"


def kill_a_worker_mid_export(deployment: CeleryDeployment, store: ObjectStore) -> tuple[int, str]:
    """Catch a worker inside a day's export, SIGKILL its host, check the day was left untouched; returns (worker, day).

    As soon as a worker host holds a day's export lock, the test locks the audit table (ACCESS
    EXCLUSIVE), so the export's read of its day waits: the worker is then inside the day (lock
    taken, nothing published) for as long as the test wants.  If the export had already read its
    day by then, the table is released and the next export is caught instead.
    """
    addresses = {deployment.network.host_address(i): i for i in range(WORKERS)}
    with psycopg.connect(deployment.postgres.url("audit_state"), autocommit=True) as state, psycopg.connect(deployment.source_url) as owner:
        for _ in range(100):
            address, day = wait_for(
                lambda: next(((a, d) for a, d in exports_in_progress(state).items() if a in addresses), None),
                "a worker to begin an export",
                timeout=600,
                interval=0.05,
            )
            with owner.transaction():
                owner.execute("LOCK TABLE audit_logs IN ACCESS EXCLUSIVE MODE")

                def caught_or_gone() -> str:
                    holding, waiting = activity(deployment, address)
                    return "caught" if holding == day and waiting else "gone" if holding != day else ""

                if wait_for(caught_or_gone, "the export to wait on the audit table or end", timeout=300, interval=0.2) == "caught":
                    assert deployment.kill_worker(addresses[address]), "the worker host had no processes"
                    # The state database notices the closed connection (idle while the export runs) and drops the day lock with it.
                    wait_for(lambda: address not in exports_in_progress(state), "the dead worker's day lock to be released", timeout=60, interval=0.5)
                    published = [key for key in store.list("") if f"date={day}" in key]
                    assert published == [], f"a worker killed mid-day left objects of {day}: {published}"
                    return addresses[address], day
    raise AssertionError("no worker was caught inside an export")


def objects(store: ObjectStore) -> dict[str, bytes]:
    return {key: store.read_bytes(key) for key in store.list("") if not key.startswith("deadletters/")}


def without_history(manifest: bytes) -> dict[str, Any]:
    """A manifest without what depends on the order days were published in: its history, its signature,
    and the previous day's manifest hash (which covers that day's history)."""
    document = json.loads(manifest)
    document.pop("history", None)
    document.pop("signature", None)
    if document.get("previous"):
        document["previous"].pop("manifest_sha256", None)
    return document


def most_runs_at_once(instance: dg.DagsterInstance, backfill_id: str) -> int:
    edges = []
    for record in instance.get_run_records(dg.RunsFilter(tags={BACKFILL_TAG: backfill_id})):
        assert record.start_time is not None and record.end_time is not None
        edges += [(record.start_time, 1), (record.end_time, -1)]
    now = most = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        now += step
        most = max(most, now)
    return most


@pytest.mark.timeout(3000)  # minutes of Dagster runs; far longer on a shared, loaded machine
def test_a_backfill_spreads_over_worker_hosts_and_survives_a_killed_worker(deployment, instance, tmp_path):
    source = PgDatabase("hellojohn", deployment.source_url, deployment.source_readonly_url)
    source.insert(itertools.chain.from_iterable(generate_events(day, events_on(i)) for i, day in enumerate(DAYS)))

    # The same days exported on one host, in process, by the documented command: the reference bytes.
    single_env = {k: v for k, v in deployment.env.items() if k not in ("AUDIT_DAGSTER_EXECUTOR", "DAGSTER_CELERY_BROKER_URL", "DAGSTER_HOME")}
    single_env["AUDIT_EXPORT_URL"] = f"s3://{deployment.bucket}/single"
    (tmp_path / "single").mkdir()
    single = subprocess.Popen(
        [str(BIN / "audit-pipeline"), "export-day", DAYS[0].isoformat(), "--to", DAYS[-1].isoformat()],
        env=single_env,
        cwd=tmp_path / "single",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    params = {
        "partitionNames": [d.isoformat() for d in DAYS],
        "assetSelection": [{"path": [key.to_user_string()]} for key in EXPORT_ASSETS.values()],
        "title": "March 2024 on Celery",
    }
    launched = deployment.graphql(LAUNCH_PARTITION_BACKFILL_MUTATION, {"backfillParams": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    # Every worker has exported a day before one of them is killed.
    names = [deployment.worker_name(i) for i in range(WORKERS)]

    def every_worker_exported() -> bool:
        backfill = instance.get_backfill(backfill_id)
        assert backfill is not None and backfill.status == BulkActionStatus.REQUESTED, "the backfill ended before every worker had exported a day"
        done = materialized_days(instance)
        return {worker for day, worker in export_attempts(instance) if day in done} == set(names)

    wait_for(every_worker_exported, "every worker to export a day", timeout=1200)
    cluster_store = ObjectStore(f"s3://{deployment.bucket}/cluster", endpoint_url=deployment.s3.endpoint_url)
    victim, killed_day = kill_a_worker_mid_export(deployment, cluster_store)

    def finished() -> bool:
        backfill = instance.get_backfill(backfill_id)
        assert backfill is not None
        return backfill.status != BulkActionStatus.REQUESTED

    wait_for(finished, "the backfill to finish", timeout=2400)
    assert single.wait(timeout=600) == 0, single.stdout.read() if single.stdout else ""

    # Every day ran once, and succeeded without a run retry: the killed worker's step went to another worker.
    backfill = instance.get_backfill(backfill_id)
    assert backfill is not None and backfill.status == BulkActionStatus.COMPLETED_SUCCESS, deployment.log_tail("daemon")
    # The backfill's runs only: the daemon also runs the schedules that are on by default (retention at 03:00).
    runs = instance.get_runs(dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}))
    assert sorted(r.tags["dagster/partition"] for r in runs) == [d.isoformat() for d in DAYS]
    assert Counter(r.status for r in runs) == {dg.DagsterRunStatus.SUCCESS: len(DAYS)}
    assert most_runs_at_once(instance, backfill_id) <= WORKERS  # the audit_source pool still limits the exports
    assert all(EXPORT_POOL in (r.run_op_concurrency.all_pools or ()) for r in runs if r.run_op_concurrency)

    # Spread: each worker exported some days; the killed day was begun by the victim and finished by another.
    attempts = export_attempts(instance)
    by_day: dict[str, list[str]] = defaultdict(list)
    for day, worker in attempts:
        by_day[day].append(worker)
    assert by_day[killed_day][0] == names[victim] and len(by_day[killed_day]) == 2 and by_day[killed_day][1] != names[victim], by_day[killed_day]
    assert {day: len(workers) for day, workers in by_day.items() if day != killed_day} == {d.isoformat(): 1 for d in DAYS if d.isoformat() != killed_day}
    per_worker = Counter(workers[-1] for workers in by_day.values())
    assert set(per_worker) == set(names) and all(per_worker[name] >= 1 for name in names), per_worker

    # Exactly once: one materialization of each asset per day, and every check passes.
    for key in EXPORT_ASSETS.values():
        records = instance.fetch_materializations(key, limit=1000).records
        partitions = Counter(r.asset_materialization.partition for r in records if r.asset_materialization)
        assert partitions == {d.isoformat(): 1 for d in DAYS}, key
    recheck_integrity(instance, failed_checks(instance, DAYS))  # days published out of order are linked by then
    assert failed_checks(instance, DAYS) == []

    # The files are the single-host export's, byte for byte; the manifests differ at most by the history
    # of a day sealed before the day before it was published ("linked" afterwards).
    cluster = objects(cluster_store)
    reference = objects(ObjectStore(f"s3://{deployment.bucket}/single", endpoint_url=deployment.s3.endpoint_url))
    assert sorted(cluster) == sorted(reference)
    assert sum(1 for key in cluster if key.startswith("csv/")) == len(DAYS)
    for key, data in cluster.items():
        if key == HEAD_KEY:  # the newest day, and its manifest as this bucket holds it
            head, reference_head = json.loads(data), json.loads(reference[key])
            assert head["day"] == reference_head["day"] == DAYS[-1].isoformat()
            assert head["manifest_sha256"] == hashlib.sha256(cluster[f"{MANIFEST_PREFIX}/date={head['day']}.json"]).hexdigest()
        elif key.startswith(MANIFEST_PREFIX + "/"):
            assert without_history(data) == without_history(reference[key]), key
            previous = json.loads(data).get("previous")
            if previous:  # the link names the previous day's manifest as this bucket holds it
                assert previous["manifest_sha256"] == hashlib.sha256(cluster[f"{MANIFEST_PREFIX}/date={previous['day']}.json"]).hexdigest(), key
            assert {entry["action"] for entry in json.loads(data).get("history", [])} <= {"linked", "relinked"}, key
        else:
            assert data == reference[key], f"{key} differs from the single-host export"
    assert os.environ.get("AUDIT_DAGSTER_EXECUTOR") is None  # the re-run checks above ran here, in process
