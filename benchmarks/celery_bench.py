"""Celery scale-out benchmark: days per hour with 1, 2 and 3 worker hosts, and what the audit database spends.

Builds the Celery deployment of the scale-out test once (worker hosts in network namespaces,
RabbitMQ, the audit database and Dagster's storage on two private PostgreSQL servers, moto S3;
``audit_pipeline_tests/operations/celery_hosts.py``; needs root, iproute2, socat and RabbitMQ on
127.0.0.1:5672), loads ``--days`` days of ``--rows`` synthetic events per phase into the audit
database, then runs one phase per worker count, in the same run: start that many workers, set the
``audit_source`` pool to it, launch a backfill of the phase's own days through the webserver's
GraphQL API and time it from the launch to the backfill's end.  Prints, per worker count: days per
hour, and the CPU seconds per day spent by the worker hosts and by the audit database's server
(its postmaster and every session it ran), whose ratio says how many worker cores one database
core can feed.

    sudo python -m benchmarks.celery_bench [--days 6] [--rows 20000] [--workers 1 2 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION

from audit_pipeline_tests.operations.celery_hosts import CeleryDeployment, celery_deployment
from benchmarks.synthetic_sql import generate_sql

FIRST_DAY = dt.date(2024, 1, 15)  # where generate_sql puts its rows
ASSETS = ("audit_logs_csv", "audit_logs_ndjson", "audit_logs_parquet")


def cpu_seconds(pids: list[int], *, reaped: bool) -> float:
    """User + system CPU of the processes (and, with ``reaped``, of the children they have waited for)."""
    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            times = process.cpu_times()
            total += times.user + times.system + ((times.children_user + times.children_system) if reaped else 0.0)
            if reaped:
                for child in process.children(recursive=True):
                    child_times = child.cpu_times()
                    total += child_times.user + child_times.system
        except psutil.NoSuchProcess:
            continue
    return total


def worker_cpu(deployment: CeleryDeployment) -> float:
    return cpu_seconds([pid for index in range(deployment.workers) for pid in deployment.network.pids(index)], reaped=False)


def source_cpu(deployment: CeleryDeployment) -> float:
    return cpu_seconds([deployment.source_server.server_pid()], reaped=True)


def backfill_status(deployment: CeleryDeployment, backfill_id: str) -> str:
    with psycopg.connect(deployment.postgres.url("dagster")) as conn:
        row = conn.execute("SELECT status FROM bulk_actions WHERE key = %s", (backfill_id,)).fetchone()
    return str(row[0]) if row else "MISSING"


def measure(deployment: CeleryDeployment, days: list[dt.date]) -> dict[str, float]:
    params = {"partitionNames": [d.isoformat() for d in days], "assetSelection": [{"path": [name]} for name in ASSETS], "title": "bench"}
    worker_before, source_before = worker_cpu(deployment), source_cpu(deployment)
    start = time.perf_counter()
    launched = deployment.graphql(LAUNCH_PARTITION_BACKFILL_MUTATION, {"backfillParams": params})["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        raise SystemExit(f"launch failed: {launched}")
    while (status := backfill_status(deployment, launched["backfillId"])) == "REQUESTED":
        time.sleep(1)
    wall = time.perf_counter() - start
    if status != "COMPLETED_SUCCESS":
        raise SystemExit(f"the backfill ended {status}:\n{deployment.log_tail('daemon')}")
    return {
        "wall": wall,
        "days_per_hour": len(days) * 3600 / wall,
        "worker_cpu_per_day": (worker_cpu(deployment) - worker_before) / len(days),
        "source_cpu_per_day": (source_cpu(deployment) - source_before) / len(days),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--days", type=int, default=6, help="days per worker count")
    parser.add_argument("--rows", type=int, default=20_000, help="events per day")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    counts = sorted(args.workers)
    print(
        f"{args.days} days of {args.rows:,} events per worker count, backfilled through the webserver; audit_source pool = workers; {psutil.cpu_count()} cores"
    )
    print("| workers | wall | days/hour | worker CPU s/day | audit database CPU s/day | worker CPU / database CPU |")
    print("| --- | --- | --- | --- | --- | --- |")
    with (
        tempfile.TemporaryDirectory(prefix="celery-bench-") as root,
        celery_deployment(counts[-1], Path(root) / "cluster", pool_limit=1, started_workers=0) as deployment,
    ):
        with psycopg.connect(deployment.source_url, autocommit=True) as conn:
            conn.execute(generate_sql(args.rows * args.days * len(counts), days=args.days * len(counts)))
            conn.execute("ANALYZE audit_logs")
        baseline = None
        started = 0
        for phase, workers in enumerate(counts):
            while started < workers:
                deployment.start_worker(started)
                started += 1
            deployment.set_pool_limit(workers)
            days = [FIRST_DAY + dt.timedelta(days=phase * args.days + i) for i in range(args.days)]
            result = measure(deployment, days)
            baseline = baseline or result["days_per_hour"]
            ratio = result["worker_cpu_per_day"] / result["source_cpu_per_day"] if result["source_cpu_per_day"] else float("inf")
            print(
                f"| {workers} | {result['wall']:.0f} s | {result['days_per_hour']:.0f} ({result['days_per_hour'] / baseline:.2f}×) |"
                f" {result['worker_cpu_per_day']:.2f} | {result['source_cpu_per_day']:.2f} | {ratio:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
