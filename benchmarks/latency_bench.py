"""Real-time forwarding latency: commit in PostgreSQL to acknowledgement by Elasticsearch, in follow mode.

A steady writer commits ``--rate`` events per second (50-row autocommit INSERTs, ``created_at`` from the
database's ``now()``) for ``--seconds`` into a scratch database, while the documented follow mode,
``audit-pipeline forward elasticsearch`` with default settings, runs as its own process against the
Elasticsearch stand-in (a process of its own too) that stamps each document's arrival as it acknowledges
its bulk request.  Printed: events delivered, lost and duplicated; p50/p95/p99/max latency from each
event's commit (when the writer's INSERT returned) to its acknowledgement; the forwarder's CPU seconds and
peak RSS; and the queries per second the forwarder sends to the audit database while idle (from
``pg_stat_database.xact_commit``: every query of the forwarder's autocommit connections is one transaction;
PostgreSQL publishes these counters up to about 10 s late, hence the 30 s window).

    python benchmarks/latency_bench.py --rate 500 --seconds 60
    python benchmarks/latency_bench.py --rate 5000 --seconds 60

Not a timed test: the figures depend on the machine (the documented ones: see docs/forwarding.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from anywhere
from benchmarks.synthetic_sql import DDL

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("AUDIT_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
COMMAND = str(Path(sys.executable).with_name("audit-pipeline"))
ROWS_PER_INSERT = 50


# -- the stand-in, in its own process -------------------------------------------------------------
def _standin(port: int, out: Path) -> None:
    """Elasticsearch stand-in stamping every created document when its bulk request is answered; writes
    ``id<TAB>arrival<TAB>status`` lines to ``out`` when terminated."""
    from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

    arrivals: list[tuple[str, float, int]] = []

    class Stamping(ElasticsearchStandIn):
        def _bulk(self, handler: Any, default_index: str | None, body: bytes) -> tuple[int, Any, bool]:
            status, answer, drop = super()._bulk(handler, default_index, body)
            now = time.time()
            if status == 200:
                for item in answer["items"]:
                    ((_, meta),) = item.items()
                    arrivals.append((meta["_id"], now, meta["status"]))
            return status, answer, drop

    standin = Stamping(port=port, store_documents=False)
    done = False

    def finish(*_: object) -> None:
        nonlocal done
        done = True

    signal.signal(signal.SIGTERM, finish)
    print(f"listening on {standin.url}", flush=True)
    while not done:
        time.sleep(0.2)
    standin.close()
    with out.open("w") as f:
        for doc_id, at, status in arrivals:
            f.write(f"{doc_id}\t{at:.6f}\t{status}\n")


# -- helpers ------------------------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _cpu_and_peak(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and peak RSS in MB of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


def _transactions(admin_url: str, name: str) -> int:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def _delivered(state_url: str) -> int:
    from audit_pipeline.forwarding.positions import PositionStore

    store = PositionStore(state_url)
    try:
        state = store.get("elasticsearch")
        return state.delivered if state else 0
    finally:
        store.close()


def _write(url: str, rate: float, seconds: float) -> dict[str, float]:
    """Commit ``rate`` events a second for ``seconds``; each event's commit time (wall clock) by id."""
    committed: dict[str, float] = {}
    interval = ROWS_PER_INSERT / rate
    statement = "INSERT INTO audit_logs (id, type, actor_email, actor_type, result, ip_address, country, metadata) VALUES " + ", ".join(
        ["(%s, 'user.login', 'bench@example.com', 'user', 'success', '192.0.2.1', 'DE', '{\"request_id\": \"r\"}')"] * ROWS_PER_INSERT
    )
    run = uuid.uuid4().hex[:8]
    with psycopg.connect(url, autocommit=True) as conn:
        start = time.monotonic()
        n = 0
        while True:
            due = start + n * interval
            if due - start >= seconds:
                break
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            ids = [f"lat_{run}_{n * ROWS_PER_INSERT + i:09d}" for i in range(ROWS_PER_INSERT)]
            conn.execute(statement, ids)
            at = time.time()
            for i in ids:
                committed[i] = at
            n += 1
        behind = time.monotonic() - (start + seconds)
    if behind > 1:
        print(f"warning: the writer fell {behind:.1f}s behind its schedule", file=sys.stderr)
    return committed


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(rate: float, seconds: float, idle_seconds: float, forwarding: dict[str, Any] | None = None) -> dict[str, Any]:
    name = f"latency_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(ADMIN_URL, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(DDL)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            port = _free_port()
            arrivals_file = work / "arrivals.tsv"
            standin = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--standin", str(port), str(arrivals_file)], cwd=ROOT, stdout=subprocess.PIPE, text=True
            )
            assert standin.stdout is not None
            standin.stdout.readline()  # listening
            state_url = f"sqlite:///{work}/state.db"
            config = {
                "source": {"database_url": url},
                "export": {"url": str(work / "exports")},
                "state_url": state_url,
                "sinks": {"elasticsearch": {"url": f"http://127.0.0.1:{port}", "start": "earliest"}},
            }
            if forwarding:
                config["forwarding"] = forwarding
            (work / "audit_pipeline.yaml").write_text(yaml.safe_dump(config))
            env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
            env["AUDIT_CONFIG"] = str(work / "audit_pipeline.yaml")
            log = (work / "forward.log").open("w")
            follower = subprocess.Popen([COMMAND, "forward", "elasticsearch"], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                time.sleep(5)  # started, imported, the sink prepared
                if follower.poll() is not None:
                    raise SystemExit(f"the forwarder exited: {(work / 'forward.log').read_text()}")
                cpu_before, _ = _cpu_and_peak(follower.pid)
                committed = _write(url, rate, seconds)
                deadline = time.monotonic() + 120
                while _delivered(state_url) < len(committed) and time.monotonic() < deadline:
                    time.sleep(0.5)
                cpu_after, peak = _cpu_and_peak(follower.pid)
                time.sleep(15)  # idle: let the follower back off and the statistics settle
                before = _transactions(ADMIN_URL, name)
                time.sleep(idle_seconds)
                after = _transactions(ADMIN_URL, name)
            finally:
                follower.send_signal(signal.SIGTERM)
                follower.wait(60)
                standin.send_signal(signal.SIGTERM)
                standin.wait(60)
            arrived: dict[str, float] = {}
            duplicated = 0
            for line in arrivals_file.read_text().splitlines():
                doc_id, at, status = line.split("\t")
                if status == "201" and doc_id not in arrived:
                    arrived[doc_id] = float(at)
                else:
                    duplicated += 1
            latencies = [arrived[i] - t for i, t in committed.items() if i in arrived]
            lost = sum(1 for i in committed if i not in arrived)
            return {
                "rate": rate,
                "seconds": seconds,
                "written": len(committed),
                "delivered": len(arrived),
                "lost": lost,
                "duplicated": duplicated,
                "p50": statistics.median(latencies) if latencies else float("nan"),
                "p95": _percentile(latencies, 0.95) if latencies else float("nan"),
                "p99": _percentile(latencies, 0.99) if latencies else float("nan"),
                "max": max(latencies) if latencies else float("nan"),
                "cpu_seconds": cpu_after - cpu_before,
                "peak_rss_mb": peak,
                # our own two samples are transactions too
                "idle_queries_per_second": max(0, after - before - 1) / idle_seconds,
                "exit": follower.returncode,
            }
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--standin":
        _standin(int(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, nargs="+", default=[500, 5000], help="events per second the writer commits")
    parser.add_argument("--seconds", type=float, default=60, help="how long the writer writes")
    parser.add_argument("--idle-seconds", type=float, default=30, help="how long the idle follower's queries are counted")
    parser.add_argument(
        "--forwarding",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a forwarding: setting other than its default, e.g. sweep_seconds=60 (YAML value; repeatable)",
    )
    args = parser.parse_args()
    overrides = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.forwarding)}
    for rate in args.rate:
        r = run(rate, args.seconds, args.idle_seconds, overrides)
        print(
            f"rate {r['rate']:,.0f}/s for {r['seconds']:.0f}s: {r['delivered']:,} of {r['written']:,} delivered, {r['lost']:,} lost, "
            f"{r['duplicated']:,} duplicated; latency p50 {r['p50']:.2f}s p95 {r['p95']:.2f}s p99 {r['p99']:.2f}s max {r['max']:.2f}s; "
            f"forwarder {r['cpu_seconds']:.1f} CPU-s ({100 * r['cpu_seconds'] / r['seconds']:.0f}% of a core), peak RSS {r['peak_rss_mb']:.0f} MB; "
            f"idle: {r['idle_queries_per_second']:.1f} queries/s to the audit database; exit {r['exit']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
