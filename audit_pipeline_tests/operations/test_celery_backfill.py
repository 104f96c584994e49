"""A 30-day backfill spread over three Celery worker hosts, two of them killed inside a day's export.

The hosts are network namespaces on this machine (``celery_hosts.py``); the backfill is launched
through the webserver's GraphQL API over HTTP, Dagster's daemon queues and starts the runs under
deploy/celery/dagster.yaml, and every step runs on whichever worker takes it from RabbitMQ.  Two
days are large (12,000 events, a few MB per format) and every worker host's network is throttled
to 1 MB/s, so that their exports take seconds to stage and to publish.  While the backfill runs:

1. the host exporting the first large day is killed with SIGKILL once that export has staged
   bytes of the day on its disk: nothing of the day may be published;
2. the host exporting the second large day is killed once the first of the day's objects is
   published and before the rest: ``audit-pipeline verify`` must report the day FAILED (objects
   without a manifest) until the retry has published it.

Each killed day's step must be finished by another worker, and in the end every day must be
exported exactly once and pass its checks.  Every day's objects, and each killed day's manifest
(when the day before it was sealed in order), are byte-identical to a single-host export; the
manifests of days sealed before the day before them was published differ by their "linked" history,
and the manifests after them by the hash of that manifest (docs/scale-out.md says which is which).

``AUDIT_TEST_CELERY_DAYS`` (default 30) shortens the backfill for a quick look.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import subprocess
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION

from audit_pipeline.core.layout import HEAD_KEY, MANIFEST_PREFIX
from audit_pipeline.defs.exports import EXPORT_ASSETS, EXPORT_POOL
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.operations.celery_hosts import BIN, CeleryDeployment, HostsUnavailable, celery_deployment
from audit_pipeline_tests.operations.test_backfill import failed_checks, recheck_integrity

pytestmark = pytest.mark.slow

DAYS = [dt.date(2024, 3, 1) + dt.timedelta(days=i) for i in range(int(os.environ.get("AUDIT_TEST_CELERY_DAYS", "30")))]
WORKERS = 3
#: Killed while staging, and killed between two published objects.
STAGING_KILL, PUBLISHING_KILL = DAYS[len(DAYS) // 3], DAYS[2 * len(DAYS) // 3]
BIG_DAY_EVENTS = 12_000
#: Each worker host's network, both ways: a large day takes seconds to read and each of its objects seconds to upload.
THROTTLE = "8mbit"
#: What records the order days were sealed in: the transparency log's tree tiles and checkpoints.
LOG_ORDERED = ("tlog/tile/", "tlog/checkpoint")
EXPORT_STEP = "audit_logs_daily_export"
BACKFILL_TAG = "dagster/backfill"  # the tag Dagster puts on every run a backfill launches


def events_on(index: int) -> int:
    return BIG_DAY_EVENTS if DAYS[index] in (STAGING_KILL, PUBLISHING_KILL) else 40 + 13 * (index % 7)


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


def exports_in_progress(state: psycopg.Connection[Any]) -> dict[str, str]:
    """Host address -> the day whose export lock it holds."""
    rows = state.execute(
        "SELECT host(a.client_addr), a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND a.client_addr IS NOT NULL"
    ).fetchall()
    return {address: name.split()[2] for address, name in rows}  # "audit_pipeline export YYYY-MM-DD host pid N"


def staged_bytes(deployment: CeleryDeployment, index: int) -> int:
    """Bytes of the day's files in worker host ``index``'s staging folders (their lock files aside)."""
    tag = deployment.network.hostname(index).replace("-", "_")  # storage.staging.host_tag of that host
    return sum(f.stat().st_size for folder in (deployment.root / "tmp").glob(f"audit-export-{tag}-*") for f in folder.iterdir() if f.name != ".owner.lock")


def day_objects(store: ObjectStore, day: str) -> list[str]:
    return [key for key in store.list("") if f"date={day}" in key]


class TableLock:
    """ACCESS EXCLUSIVE on the audit table, asked for from a thread: exports that begin reading after it was
    asked for wait (in their source check) until :meth:`release`, so a killed day's retry waits for the test."""

    def __init__(self, deployment: CeleryDeployment) -> None:
        self.connection = psycopg.connect(deployment.source_url)
        self.pid = self.connection.info.backend_pid
        self.granted = threading.Event()
        self.thread = threading.Thread(target=self._lock, daemon=True)
        self.thread.start()
        with psycopg.connect(deployment.source_url, autocommit=True) as watcher:
            wait_for(
                lambda: watcher.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND relation = 'audit_logs'::regclass", (self.pid,)).fetchone()[0],  # type: ignore[index]
                "the table lock to be asked for",
                timeout=60,
                interval=0.05,
            )

    def _lock(self) -> None:
        self.connection.execute("LOCK TABLE audit_logs IN ACCESS EXCLUSIVE MODE")
        self.granted.set()

    def wait_granted(self) -> None:
        wait_for(self.granted.is_set, "the table lock", timeout=120, interval=0.1)

    def release(self) -> None:
        self.thread.join(timeout=120)
        self.connection.rollback()
        self.connection.close()


def holder_of(state: psycopg.Connection[Any], deployment: CeleryDeployment, day: str) -> int:
    """The worker host that holds ``day``'s export lock, once one does."""
    addresses = {deployment.network.host_address(i): i for i in range(WORKERS)}
    address = wait_for(
        lambda: next((a for a, d in exports_in_progress(state).items() if d == day and a in addresses), None),
        f"a worker to begin exporting {day}",
        timeout=1800,
        interval=0.05,
    )
    return addresses[address]


def kill_holding_the_table(deployment: CeleryDeployment, state: psycopg.Connection[Any], index: int) -> TableLock:
    """SIGKILL worker host ``index`` with the audit table's lock asked for first (the retry of its day waits for
    the test's assertions); returns once the dead host's day lock is gone.  The caller releases the table."""
    table = TableLock(deployment)
    assert deployment.kill_worker(index), "the worker host had no processes"
    table.wait_granted()  # the dead host's read (if any) ended with its connection
    address = deployment.network.host_address(index)
    # The state database notices the closed connection (idle while the export runs) and drops the day lock with it.
    wait_for(lambda: address not in exports_in_progress(state), "the dead worker's day lock to be released", timeout=60, interval=0.5)
    return table


def kill_while_staging(deployment: CeleryDeployment, store: ObjectStore) -> tuple[int, int]:
    """Kill the host exporting STAGING_KILL once it has staged bytes of the day: nothing of it may be published.
    Returns (worker, bytes staged when it was killed)."""
    day = STAGING_KILL.isoformat()
    with psycopg.connect(deployment.postgres.url("audit_state"), autocommit=True) as state:
        index = holder_of(state, deployment, day)
        staged = wait_for(lambda: staged_bytes(deployment, index), f"the export of {day} to stage bytes", timeout=600, interval=0.05)
        assert day_objects(store, day) == [], "the export published before it was caught staging"
        table = kill_holding_the_table(deployment, state, index)
        try:
            assert day_objects(store, day) == [], f"a worker killed while staging {day} left objects of it"
            assert staged_bytes(deployment, index) >= staged  # the dead host's staging is left behind, not published
        finally:
            table.release()
    return index, staged


def kill_between_objects(deployment: CeleryDeployment, store: ObjectStore, tmp_path: Path) -> tuple[int, list[str]]:
    """Kill the host exporting PUBLISHING_KILL once the first of the day's objects is published and before the
    rest: ``verify`` must then report the day FAILED.  Returns (worker, the day's objects when it was killed)."""
    day = PUBLISHING_KILL.isoformat()
    with psycopg.connect(deployment.postgres.url("audit_state"), autocommit=True) as state:
        index = holder_of(state, deployment, day)
        wait_for(lambda: day_objects(store, day), f"the first object of {day} to be published", timeout=600, interval=0.05)
        table = kill_holding_the_table(deployment, state, index)
        try:
            published = day_objects(store, day)
            assert published and not any(key.startswith(MANIFEST_PREFIX) for key in published), published
            assert len(published) < len(EXPORT_ASSETS), f"all of {day}'s objects were published before the kill: {published}"
            verified = verify(deployment, tmp_path, day)
            assert verified.returncode == 1, verified.stdout
            line = next(line for line in verified.stdout.splitlines() if line.startswith(day))
            assert "FAILED" in line and "manifest missing" in verified.stdout, verified.stdout
        finally:
            table.release()
    return index, published


def verify(deployment: CeleryDeployment, tmp_path: Path, day: str | None = None) -> subprocess.CompletedProcess[str]:
    """``audit-pipeline verify`` of the cluster's bucket (one day, or all), as an operator runs it on the head host."""
    env = {k: v for k, v in deployment.env.items() if k not in ("AUDIT_DAGSTER_EXECUTOR", "DAGSTER_CELERY_BROKER_URL", "DAGSTER_HOME")}
    days = ["--from", day, "--to", day] if day else []
    return subprocess.run([str(BIN / "audit-pipeline"), "verify", *days], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)


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


def log_day(record: bytes) -> dict[str, Any]:
    """A transparency-log day record without what depends on the sealing order: where its leaves start (``first``),
    the tree's size once they are in (``size``) and the checkpoint right after it (tree size and root; its origin also
    names the store's prefix)."""
    return {k: v for k, v in json.loads(record).items() if k not in ("first", "size", "checkpoint")}


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
def test_a_backfill_spreads_over_worker_hosts_and_survives_workers_killed_while_staging_and_publishing(deployment, instance, tmp_path):
    source = PgDatabase("hellojohn", deployment.source_url, deployment.source_readonly_url)
    source.insert(itertools.chain.from_iterable(generate_events(day, events_on(i)) for i, day in enumerate(DAYS)))
    for index in range(WORKERS):
        deployment.network.throttle(index, THROTTLE)

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

    names = [deployment.worker_name(i) for i in range(WORKERS)]
    cluster_store = ObjectStore(f"s3://{deployment.bucket}/cluster", endpoint_url=deployment.s3.endpoint_url)
    staging_victim, staged = kill_while_staging(deployment, cluster_store)
    publishing_victim, half_published = kill_between_objects(deployment, cluster_store, tmp_path)
    assert staged > 0 and publishing_victim != staging_victim
    assert half_published[0].startswith("csv/")  # objects go up in a fixed order: the CSV, then NDJSON and Parquet, the manifest last
    killed = {STAGING_KILL.isoformat(): staging_victim, PUBLISHING_KILL.isoformat(): publishing_victim}

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

    # Spread: each worker began some days; each killed day was begun by its victim and finished by another worker.
    attempts = export_attempts(instance)
    by_day: dict[str, list[str]] = defaultdict(list)
    for day, worker in attempts:
        by_day[day].append(worker)
    for killed_day, victim in killed.items():
        assert by_day[killed_day][0] == names[victim] and len(by_day[killed_day]) == 2 and by_day[killed_day][1] != names[victim], by_day[killed_day]
    assert {day: len(workers) for day, workers in by_day.items() if day not in killed} == {d.isoformat(): 1 for d in DAYS if d.isoformat() not in killed}
    # Every worker took export steps from the queue.  Counted by the steps begun, not finished: a victim may have been
    # handed its killed day first, and the queue owes it nothing after its death.
    per_worker = Counter(worker for _, worker in attempts)
    assert set(per_worker) == set(names), per_worker

    # Exactly once: one materialization of each asset per day, and every check passes.
    for key in EXPORT_ASSETS.values():
        records = instance.fetch_materializations(key, limit=1000).records
        partitions = Counter(r.asset_materialization.partition for r in records if r.asset_materialization)
        assert partitions == {d.isoformat(): 1 for d in DAYS}, key
    recheck_integrity(instance, failed_checks(instance, DAYS))  # days published out of order are linked by then
    assert failed_checks(instance, DAYS) == []

    verified = verify(deployment, tmp_path)  # the half-published day is whole again after its retry
    assert verified.returncode == 0 and f"{len(DAYS)} OK" in verified.stdout, verified.stdout

    # Byte-identical to the single-host export: every day's objects, and each killed day's manifest when the day
    # before it was sealed in order.  A manifest sealed before the day before it was published records the link
    # made afterwards ("linked" in its history); the manifest after it then names a different previous hash, and
    # head.json the newest manifest as this bucket holds it.  Those differ from the single-host export, and nothing else.
    cluster = objects(cluster_store)
    reference = objects(ObjectStore(f"s3://{deployment.bucket}/single", endpoint_url=deployment.s3.endpoint_url))
    # The transparency log's tree (tiles, checkpoints) appends each day's leaves in the order days were sealed.
    assert sorted(k for k in cluster if not k.startswith(LOG_ORDERED)) == sorted(k for k in reference if not k.startswith(LOG_ORDERED))
    assert sum(1 for key in cluster if key.startswith("csv/")) == len(DAYS)
    for key, data in cluster.items():
        if key.startswith(LOG_ORDERED):
            continue
        if key.startswith("tlog/days/"):  # the day's row count and events hash; its leaves' start and checkpoint depend on the order
            assert log_day(data) == log_day(reference[key]), key
        elif key == HEAD_KEY:  # the newest day, and its manifest as this bucket holds it
            head, reference_head = json.loads(data), json.loads(reference[key])
            assert head["day"] == reference_head["day"] == DAYS[-1].isoformat()
            assert head["manifest_sha256"] == hashlib.sha256(cluster[f"{MANIFEST_PREFIX}/date={head['day']}.json"]).hexdigest()
        elif key.startswith(MANIFEST_PREFIX + "/"):
            document = json.loads(data)
            previous = document.get("previous")
            if previous:  # the link names the previous day's manifest as this bucket holds it
                assert previous["manifest_sha256"] == hashlib.sha256(cluster[f"{MANIFEST_PREFIX}/date={previous['day']}.json"]).hexdigest(), key
            in_order = not previous or cluster[f"{MANIFEST_PREFIX}/date={previous['day']}.json"] == reference[f"{MANIFEST_PREFIX}/date={previous['day']}.json"]
            if data != reference[key]:
                assert document.get("history") or not in_order, (
                    f"{key} differs from the single-host export although its day and the day before were sealed in order"
                )
                assert {entry["action"] for entry in document.get("history", [])} <= {"linked", "relinked"}, key
                assert without_history(data) == without_history(reference[key]), key
            if document["day"] in killed and in_order and not document.get("history"):
                assert data == reference[key], f"the retried day's manifest {key} differs from the single-host export"
        else:
            assert data == reference[key], f"{key} differs from the single-host export"
    assert os.environ.get("AUDIT_DAGSTER_EXECUTOR") is None  # the re-run checks above ran here, in process
