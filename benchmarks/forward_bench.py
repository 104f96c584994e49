"""Forwarding benchmark: our engine against the naive recipe, into the Elasticsearch stand-in.

Loads N events (default 500,000, over five UTC days, ten events per timestamp) into PostgreSQL,
starts the Elasticsearch stand-in in its own process, then forwards everything, each method in
its own process so that peak memory is its own:

* **engine** — :class:`audit_pipeline.forwarding.engine.Forwarder` with every guarantee on: keyset
  ``(created_at, id)`` reads below the horizon (settle lag and open-transaction check), durable
  positions committed per batch, ``create`` with ``_id`` and per-item response handling;
* **naive** — the Logstash-style recipe: ``SELECT ... WHERE created_at > :last_value ORDER BY
  created_at LIMIT batch`` with psycopg, one dict per event, ``elasticsearch.helpers.bulk``.

Prints events/s for both, the ratio, peak RSS, and how many events each left out.

    python benchmarks/forward_bench.py [--rows 500000] [--database-url postgresql://...] [--batch 5000]
    python benchmarks/forward_bench.py --rows 2000000 --engine-only     # memory during a long catch-up
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from anywhere
from audit_pipeline.schema import COLUMNS
from benchmarks.synthetic_sql import DDL, generate_sql

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DAYS = 5

NAIVE_SELECT = (
    "SELECT id, type, actor_id, actor_email, actor_type, resource_id, resource_type, tenant_id, organization_id,"
    " host(ip_address), country, result, created_at, metadata FROM audit_logs WHERE created_at > %s ORDER BY created_at LIMIT %s"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the two methods, each run in a child process ------------------------------------------------
def run_engine(database_url: str, es_url: str, batch: int) -> dict[str, float]:
    from audit_pipeline.forwarding.config import ForwardingSettings, SinkForwarding
    from audit_pipeline.forwarding.deadletters import DeadLetterStore
    from audit_pipeline.forwarding.engine import Forwarder
    from audit_pipeline.forwarding.positions import PositionStore
    from audit_pipeline.sinks.elasticsearch import ElasticsearchSink
    from audit_pipeline.sources.postgres import PostgresSource
    from audit_pipeline.storage import ObjectStore

    work = Path(tempfile.mkdtemp(prefix="forward-bench-"))
    sink = ElasticsearchSink.from_config({"url": es_url, "index": "bench-engine-%Y.%m.%d", "template_name": "bench-engine", "batch_events": batch})
    settings = ForwardingSettings(settle_seconds=10, batch_events=batch, read_events=50_000)
    forwarder = Forwarder(
        sink,
        PostgresSource(database_url),
        PositionStore(f"sqlite:///{work}/state.db"),
        DeadLetterStore(ObjectStore(str(work / "exports"))),
        settings,
        SinkForwarding(start="earliest"),
    )
    import adbc_driver_postgresql.dbapi  # noqa: F401  (imports outside the timing, as in the naive run)

    sink.client  # noqa: B018  (client built outside the timing too)
    started = time.perf_counter()
    with forwarder.leased():
        result = forwarder.run_pass()
    seconds = time.perf_counter() - started
    if result.stopped:
        raise SystemExit(result.summary())
    return {"events": result.delivered, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def run_naive(database_url: str, es_url: str, batch: int) -> dict[str, float]:
    import datetime as dt

    from elasticsearch import Elasticsearch, helpers

    client = Elasticsearch(es_url)
    last = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    sent = 0
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        while True:
            rows = conn.execute(NAIVE_SELECT, (last, batch)).fetchall()
            if not rows:
                break
            actions = []
            for row in rows:
                doc = dict(zip(COLUMNS, row, strict=True))
                created = doc["created_at"]
                doc["created_at"] = created.isoformat()
                actions.append({"_index": f"bench-naive-{created:%Y.%m.%d}", "_id": doc["id"], "_source": doc})
            ok, _ = helpers.bulk(client, actions, chunk_size=batch)
            sent += ok
            last = rows[-1][12]
    seconds = time.perf_counter() - started
    return {"events": sent, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


# -- orchestration ---------------------------------------------------------------------------------
def _child(method: str, database_url: str, es_url: str, batch: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, "--database-url", database_url, "--es-url", es_url, "--batch", str(batch)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _count(es_url: str, pattern: str) -> int:
    from elasticsearch import Elasticsearch

    client = Elasticsearch(es_url)
    return int(client.count(index=pattern)["count"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--database-url", default=None, help="default: a scratch database on 127.0.0.1:5432, dropped afterwards")
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--engine-only", action="store_true", help="skip the naive recipe (memory checks with millions of events)")
    parser.add_argument("--child", choices=["engine", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--es-url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        run = run_engine if args.child == "engine" else run_naive
        print(json.dumps(run(args.database_url, args.es_url, args.batch)))
        return

    scratch = None
    url = args.database_url
    if url is None:
        scratch = f"audit_forward_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {scratch}")
        url = f"postgresql://postgres@127.0.0.1:5432/{scratch}"
    port = _free_port()
    standin = subprocess.Popen(
        [sys.executable, "-m", "audit_pipeline_tests.standins.elasticsearch", "--port", str(port), "--no-store"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert standin.stdout is not None
        standin.stdout.readline()  # "listening on ..."
        es_url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS audit_logs")
            conn.execute(DDL)
            conn.execute(generate_sql(args.rows, days=DAYS, same_timestamp=10))
            conn.execute("ANALYZE audit_logs")
            ties = conn.execute("SELECT count(*) FROM (SELECT created_at FROM audit_logs GROUP BY created_at HAVING count(*) > 1) t").fetchone()
        print(f"loaded {args.rows:,} events over {DAYS} days ({ties[0] if ties else 0:,} timestamps shared) in {time.perf_counter() - started:.1f}s")
        print(f"machine: {os.cpu_count()} cores; stand-in Elasticsearch in its own process; batch {args.batch:,} events")

        results = {}
        for method in ("engine",) if args.engine_only else ("naive", "engine"):
            results[method] = _child(method, url, es_url, args.batch)
            results[method]["indexed"] = _count(es_url, f"bench-{method}-*")
        print()
        print(f"{'method':<8} {'events/s':>12} {'seconds':>9} {'indexed':>10} {'missing':>9} {'peak RSS':>10}")
        for method, r in results.items():
            rate = r["events"] / r["seconds"]
            print(f"{method:<8} {rate:>12,.0f} {r['seconds']:>9.2f} {int(r['indexed']):>10,} {args.rows - int(r['indexed']):>9,} {r['peak_rss_mb']:>8.0f}MB")
        if "naive" in results:
            ratio = (results["engine"]["events"] / results["engine"]["seconds"]) / (results["naive"]["events"] / results["naive"]["seconds"])
            print(f"\nengine / naive throughput: {ratio:.2f}x")
    finally:
        standin.terminate()
        standin.wait(10)
        if scratch:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")


if __name__ == "__main__":
    main()
