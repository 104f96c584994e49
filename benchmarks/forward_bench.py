"""Forwarding benchmark: `audit-pipeline forward elasticsearch --once` against the Logstash recipe, and the source read alone.

For each size (default 200,000 and 2,000,000 events over five UTC days, ten events per timestamp)
it loads the events into a scratch PostgreSQL database and runs each method below as its own process (so that its
peak RSS is its own), against a fresh Elasticsearch stand-in in a process of its own:

* **ours** — the documented command, ``audit-pipeline forward elasticsearch --once``, with every
  guarantee on (horizon, durable positions, ``create`` with ``_id``, per-item answers, the late-commit
  ledger with ``late_window`` 15 minutes); ``ours, no sweep`` is the same with ``late_window: 0``, to
  measure what the sweep's ledger costs;
* **recipe** — the Logstash recipe written in Python: a psycopg2-style server-side cursor over
  ``SELECT ... ORDER BY created_at`` and ``elasticsearch.helpers.bulk`` with 1,000 actions a request;
* **read** — the source alone: our PostgreSQL source reading every event in keyset windows, no sink.

Rates are events per second of the forwarding itself (the command's own pass time, as it prints it)
and, for ours, also of the whole process including Python's start and imports (``wall``).

    python benchmarks/forward_bench.py [--rows 200000 2000000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from anywhere
from audit_pipeline.core.schema import COLUMNS
from benchmarks.synthetic_sql import DDL, generate_sql

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
COMMAND = str(Path(sys.executable).with_name("audit-pipeline"))
DAYS = 5
RECIPE_SELECT = (
    "SELECT id, type, actor_id, actor_email, actor_type, resource_id, resource_type, tenant_id, organization_id,"
    " host(ip_address), country, result, created_at, metadata FROM audit_logs ORDER BY created_at"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], env: dict[str, str] | None = None) -> tuple[str, str, float, float, float, float]:
    """Run a process to its end: stdout, stderr, wall seconds, its own peak RSS in MB, its CPU seconds and
    the system part of them (wait4).

    The peak is the child's ``VmHWM`` (the high-water mark of its own address space), read every 10 ms
    until it exits.  wait4's ``ru_maxrss`` is not used: Linux carries the parent's high-water mark into a
    child started with vfork and exec, so every child would show at least this script's own peak.
    """
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, text=True, cwd=ROOT, env=env)
        peak = [0]
        watcher = threading.Thread(target=_watch_high_water, args=(proc.pid, peak), daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        watcher.join()
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({code}): {err[-2000:]}")
    return out, err, wall, peak[0] / 1024, usage.ru_utime + usage.ru_stime, usage.ru_stime


def _watch_high_water(pid: int, peak: list[int]) -> None:
    """Keep ``peak[0]`` at the process's VmHWM in kB until it has exited (its status no longer has one)."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            text = status.read_text()
        except OSError:
            return
        match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
        if match is None:
            if peak[0]:  # exited (a zombie has no memory); before exec, /proc may show no VmHWM yet
                return
        else:
            peak[0] = max(peak[0], int(match.group(1)))
        time.sleep(0.01)


# -- children ----------------------------------------------------------------------------------------
def child_recipe(database_url: str, es_url: str) -> dict[str, float]:
    """The Logstash recipe: a server-side cursor and helpers.bulk, 1,000 actions a request."""
    from elasticsearch import Elasticsearch, helpers

    client = Elasticsearch(es_url)
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn, conn.cursor(name="recipe") as cursor:
        cursor.itersize = 1_000
        cursor.execute(RECIPE_SELECT)

        def actions() -> Any:
            for row in cursor:
                doc = dict(zip(COLUMNS, row, strict=True))
                created = doc["created_at"]
                doc["created_at"] = created.isoformat()
                yield {"_index": f"bench-recipe-{created:%Y.%m.%d}", "_id": doc["id"], "_source": doc}

        sent, _ = helpers.bulk(client, actions(), chunk_size=1_000)
    return {"events": sent, "seconds": time.perf_counter() - started}  # peak RSS: the parent reads the child's VmHWM


def child_read(database_url: str, es_url: str) -> dict[str, float]:
    """Our source alone: every event, in keyset windows as a pass reads them, into nothing."""
    import datetime as dt

    from audit_pipeline.config.sections.forwarding import ForwardingSettings
    from audit_pipeline.sources.base import Position, TimeRange
    from audit_pipeline.sources.postgres import PostgresSource

    window = ForwardingSettings().read_events
    source = PostgresSource(database_url)
    end = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    started = time.perf_counter()
    events, position = 0, None
    while True:
        read = 0
        for batch in source.iter_batches(TimeRange(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), end), after=position, limit=window):
            read += batch.num_rows
            last = batch
        events += read
        if read < window:
            break
        position = Position(last.column(COLUMNS.index("created_at"))[-1].as_py(), last.column(0)[-1].as_py())
    source.close()
    return {"events": events, "seconds": time.perf_counter() - started}


# -- one size ------------------------------------------------------------------------------------------
def _ours(work: Path, database_url: str, es_url: str, index: str, late_window: str) -> dict[str, float]:
    config = {
        "source": {"database_url": database_url},
        "export": {"url": str(work / f"exports-{index}")},
        "state_url": f"sqlite:///{work}/state-{index}.db",
        "forwarding": {"settle_seconds": 10, "late_window": late_window},
        "sinks": {"elasticsearch": {"url": es_url, "index": f"bench-{index}-%Y.%m.%d", "template_name": f"bench-{index}", "start": "earliest"}},
    }
    path = work / f"{index}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    out, err, wall, rss, cpu, system = _run([COMMAND, "--config", str(path), "forward", "elasticsearch", "--once"], env)
    match = re.search(r"([\d,]+) delivered, .* in ([\d.]+)s", out)
    if not match:
        raise SystemExit(f"unexpected output of forward: {out} {err[-500:]}")
    return {"events": int(match.group(1).replace(",", "")), "seconds": float(match.group(2)), "wall": wall, "peak_rss_mb": rss, "cpu": cpu, "sys": system}


def _child(method: str, database_url: str, es_url: str) -> dict[str, float]:
    out, _, wall, rss, cpu, system = _run([sys.executable, __file__, "--child", method, "--database-url", database_url, "--es-url", es_url])
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return {**result, "wall": wall, "peak_rss_mb": rss, "cpu": cpu, "sys": system}


def _cpu_seconds(pid: int) -> float:
    """A running process's user + system CPU seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _count(es_url: str, pattern: str) -> int:
    from elasticsearch import Elasticsearch

    return int(Elasticsearch(es_url).count(index=pattern)["count"])


def ledger_cost_us(batches: int = 40, size: int = 5_000) -> float:
    """CPU microseconds per event the late-commit ledger adds: building a batch's entry and committing it to SQLite."""
    import sqlalchemy as sa

    from audit_pipeline.forwarding.ledger import LedgerEntry, metadata, record
    from audit_pipeline_tests.sinks.events import batch_of, synthetic

    events = batch_of(synthetic(size))
    engine = sa.create_engine(f"sqlite:///{tempfile.mkdtemp(prefix='ledger-bench-')}/state.db")
    metadata.create_all(engine)
    started = time.process_time()
    for _ in range(batches):
        entry = LedgerEntry.of(events)
        with engine.begin() as conn:
            record(conn, "bench", entry, 0)
    return (time.process_time() - started) / (batches * size) * 1e6


class _StandIn:
    """The Elasticsearch stand-in in its own process, fresh for each method.

    The stand-in keeps every ``(index, _id)`` it has indexed (to answer ``409`` and count duplicates), and its
    CPU per event grows with what it holds: one stand-in shared by the methods of a 5,000,000-event run spent
    5.7 µs per event on the first, 18.2 on the second and 27.5 on the third, so it slowed whichever ran
    later.  Each method gets its own."""

    def __init__(self) -> None:
        port = _free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "audit_pipeline_tests.standins.elasticsearch", "--port", str(port), "--no-store"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.process.stdout.readline()  # "listening on ..."
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _on_fresh_standin(run: Any, pattern: str | None) -> dict[str, float]:
    """Run one method against a stand-in of its own: its result, the stand-in's CPU meanwhile and what it indexed."""
    standin = _StandIn()
    try:
        before = _cpu_seconds(standin.process.pid)
        result: dict[str, float] = run(standin.url)
        result = {**result, "standin_cpu": _cpu_seconds(standin.process.pid) - before}
        if pattern is not None:
            result["indexed"] = _count(standin.url, pattern)
        return result
    finally:
        standin.stop()


def bench(rows: int, database_url: str | None) -> None:
    scratch = None
    url = database_url
    if url is None:
        scratch = f"audit_forward_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {scratch}")
        url = f"postgresql://postgres@127.0.0.1:5432/{scratch}"
    try:
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS audit_logs")
            conn.execute(DDL)
            conn.execute(generate_sql(rows, days=DAYS, same_timestamp=10))
            conn.execute("VACUUM ANALYZE audit_logs")
        print(
            f"\n{rows:,} events over {DAYS} days loaded in {time.perf_counter() - started:.1f}s; {os.cpu_count()} cores shared with the stand-in and PostgreSQL"
        )
        work = Path(tempfile.mkdtemp(prefix="forward-bench-"))
        results = {
            "read": _on_fresh_standin(lambda es: _child("read", url, es), None),
            "recipe": _on_fresh_standin(lambda es: _child("recipe", url, es), "bench-recipe-*"),
            "ours": _on_fresh_standin(lambda es: _ours(work, url, es, "ours", "15m"), "bench-ours-*"),
            "ours, no sweep": _on_fresh_standin(lambda es: _ours(work, url, es, "nosweep", "0"), "bench-nosweep-*"),
        }
        print(
            f"{'method':<16} {'events/s':>10} {'seconds':>8} {'wall s':>7} {'indexed':>10} {'missing':>8} {'peak RSS':>9} {'CPU us/ev':>10} {'sys s':>6}"
            f" {'stand-in us/ev':>15}"
        )
        for method, r in results.items():
            got = r.get("indexed")
            shown = f"{got:>10,} {rows - got:>8,}" if got is not None else f"{'-':>10} {'-':>8}"
            per_event = 1e6 / max(1, r["events"])
            print(
                f"{method:<16} {r['events'] / r['seconds']:>10,.0f} {r['seconds']:>8.2f} {r['wall']:>7.2f} {shown} {r['peak_rss_mb']:>7.0f}MB"
                f" {r['cpu'] * per_event:>10.1f} {r['sys']:>6.2f} {r['standin_cpu'] * per_event:>15.1f}"
            )
        print(
            "CPU us/ev: the method's whole process (imports included), sys s the system-time part of it in seconds;"
            " stand-in us/ev: the Elasticsearch stand-in meanwhile, on the same cores"
        )
        rate = {m: r["events"] / r["seconds"] for m, r in results.items()}
        print(f"ours / recipe: {rate['ours'] / rate['recipe']:.2f}x (whole process: {(rows / results['ours']['wall']) / rate['recipe']:.2f}x)")
        print(f"sweep ledger cost: {100 * (1 - rate['ours'] / rate['ours, no sweep']):.1f}% of the throughput (run to run)")
        cost = ledger_cost_us()
        print(
            f"ledger CPU: {cost:.2f} us per event = {cost * rate['ours'] / 1e4:.1f}% of ours' time per event here, {cost * 50_000 / 1e4:.1f}% at 50,000 events/s"
        )
    finally:
        if scratch:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 2_000_000])
    parser.add_argument("--database-url", default=None, help="default: a scratch database on 127.0.0.1:5432, dropped afterwards")
    parser.add_argument("--child", choices=["recipe", "read"], help=argparse.SUPPRESS)
    parser.add_argument("--es-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = child_recipe if args.child == "recipe" else child_read
        print(json.dumps(run(args.database_url, args.es_url)))
        return
    for rows in args.rows:
        bench(rows, args.database_url)


if __name__ == "__main__":
    main()
