"""HelloJohn API source and ad-hoc export benchmark, each against a baseline measured in the same run.

C. (the default) A day read through the export endpoint against the same day read through the paged
   list, from the HelloJohn stand-in (audit_pipeline_tests/standins/hellojohn_api.py) serving a real
   PostgreSQL table over HTTP: requests made, wall time and the client's peak RSS, each read in its own
   process (the stand-in runs in this one).  Days of ``--day-events`` synthetic events (default
   200,000 and 1,000,000, loaded into the scratch database audit_bench_api); the export is also read
   from a server that caps each response at 100,000 rows, as HelloJohn caps its CSV download.
A. (with ``--events``) The API source's own work per event, for the paged list and the export stream.  N synthetic events are cut into pages of 200 in the
   documented ``{"data": [...], "meta": {"cursor": ...}}`` shape and served from memory
   (``httpx.MockTransport``), so neither a server nor a network is timed.  Baseline: the
   documentation's nightly script, i.e. ``json.loads`` each page and ``json.dumps`` each
   event into a list.  Ours: ``HelloJohnApiSource.iter_batches`` (exact numbers, jsonb
   text, order and repeat guards, Arrow batches) plus the NDJSON encoding of each batch.
   Each runs in its own process; "client MB" is its peak RSS growth once the pages exist.
B. ``audit-pipeline export --format csv`` of one day from PostgreSQL against PostgreSQL's
   own ``COPY (SELECT ...) TO STDOUT (FORMAT csv)`` of the same day (the floor).

    python -m benchmarks.hellojohn_api_bench [--day-events 200000,1000000] [--events 100000,300000] [--rows 500000] [--database-url URL]

Prints events/s, requests, memory (A: the client's growth over the pages it is served; B, C: peak RSS)
and the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PAGE = 200
DAY = dt.date(2024, 1, 15)
#: HelloJohn's documented read limit (Pro plan): 1,000 GET a minute per key.
READS_PER_MINUTE = 1_000


def _pages(events: int) -> list[bytes]:
    """All pages, encoded before the clock starts: the client's work is what is timed."""
    from audit_pipeline.sources.synthetic import generate_events

    pages: list[bytes] = []
    rows: list[dict[str, Any]] = []
    for n, event in enumerate(generate_events(DAY, events), start=1):
        event["created_at"] = event["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        rows.append(event)
        if len(rows) == PAGE or n == events:
            meta = {"total": events, "limit": PAGE, "cursor": str(n) if n < events else None}
            pages.append(json.dumps({"data": rows, "meta": meta}).encode())
            rows = []
    return pages


def _transport(pages: list[bytes]) -> Any:
    import httpx

    def handle(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        return httpx.Response(200, content=pages[int(cursor) // PAGE if cursor else 0], headers={"Content-Type": "application/json"})

    return httpx.MockTransport(handle)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def phase_docs_script(events: int, _: str) -> dict[str, float]:
    import httpx

    client = httpx.Client(base_url="https://auth.example.com", transport=_transport(_pages(events)))
    before = _rss_mb()
    start = time.perf_counter()
    logs: list[str] = []
    cursor = None
    while True:
        params = {"from": "2024-01-15T00:00:00Z", "to": "2024-01-16T00:00:00Z", "limit": PAGE, **({"cursor": cursor} if cursor else {})}
        page = json.loads(client.get("/v1/audit-logs", params=params, headers={"Authorization": "Bearer sk_bench"}).content)
        logs.extend(json.dumps(e) for e in page["data"])
        cursor = page["meta"].get("cursor")
        if not cursor:
            break
    return {"seconds": time.perf_counter() - start, "events": len(logs), "growth_mb": _peak_mb() - before}


def phase_ours(events: int, _: str) -> dict[str, float]:
    from audit_pipeline.formats.encoding import encode_ndjson
    from audit_pipeline.sources.base import TimeRange
    from audit_pipeline.sources.hellojohn_api import HelloJohnApiSource
    from audit_pipeline.sources.hellojohn_events import RowBuffer

    RowBuffer().take_batch()  # warm up: pyarrow's lazy imports are not per-event work
    source = HelloJohnApiSource("https://auth.example.com", "sk_bench", api_read="list", transport=_transport(_pages(events)))
    before = _rss_mb()
    start = time.perf_counter()
    rows = nbytes = 0
    for batch in source.iter_batches(TimeRange.for_day(DAY)):
        rows += batch.num_rows
        nbytes += len(encode_ndjson(batch))
    return {"seconds": time.perf_counter() - start, "events": rows, "ndjson_bytes": nbytes, "growth_mb": _peak_mb() - before}


def _export_transport(events: int) -> Any:
    """The day as the export endpoint sends it (NDJSON, gzip), encoded before the clock starts."""
    import gzip
    import io

    import httpx

    from audit_pipeline.sources.synthetic import generate_events

    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as out:  # line by line: building it leaves no peak behind
        for event in generate_events(DAY, events):
            event["created_at"] = event["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            out.write(json.dumps(event).encode() + b"\n")
    body = buffer.getvalue()

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/audit-logs"):  # the list request settling the last instant: nothing more there
            return httpx.Response(200, json={"data": [], "meta": {"cursor": None}})
        if request.url.params.get("from") != f"{DAY.isoformat()}T00:00:00Z":  # the request after the day: nothing more
            return httpx.Response(200, content=iter([]), headers={"Content-Type": "application/x-ndjson"})
        chunks = (body[i : i + 65_536] for i in range(0, len(body), 65_536))  # as a network delivers it
        return httpx.Response(200, content=chunks, headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})

    return httpx.MockTransport(handle)


def phase_ours_export(events: int, _: str) -> dict[str, float]:
    """The export stream's own work: gunzip, lines, exact rows, Arrow batches (the same NDJSON encoding after)."""
    from audit_pipeline.formats.encoding import encode_ndjson
    from audit_pipeline.sources.base import TimeRange
    from audit_pipeline.sources.hellojohn_api import HelloJohnApiSource
    from audit_pipeline.sources.hellojohn_events import RowBuffer

    RowBuffer().take_batch()
    source = HelloJohnApiSource("https://auth.example.com", "sk_bench", export_row_cap=0, transport=_export_transport(events))
    before = _rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    rows = nbytes = 0
    for batch in source.iter_batches(TimeRange.for_day(DAY)):
        rows += batch.num_rows
        nbytes += len(encode_ndjson(batch))
    return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu, "events": rows, "growth_mb": _peak_mb() - before}


def phase_copy(_: int, url: str) -> dict[str, float]:
    import psycopg

    from benchmarks.export_bench import SELECT

    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY ({SELECT}) TO STDOUT (FORMAT csv, HEADER)") as copy:
            for chunk in copy:
                out.write(chunk)
        size = out.tell()
    return {"seconds": time.perf_counter() - start, "bytes": size}


def phase_export_csv(_: int, url: str) -> dict[str, float]:
    from audit_pipeline.exports.adhoc import write_range
    from audit_pipeline.sources.base import TimeRange
    from audit_pipeline.sources.postgres import PostgresSource

    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, PostgresSource(url) as source:
        result = write_range(source, TimeRange.for_day(DAY), "csv", out)
        size = out.tell()
    return {"seconds": time.perf_counter() - start, "bytes": size, "events": result.rows}


def _read_day(api_read: str, base_url: str) -> dict[str, float]:
    """One day through the HelloJohn API source, as the daily export reads it; the stand-in's key."""
    from audit_pipeline.sources.base import TimeRange
    from audit_pipeline.sources.hellojohn_api import HelloJohnApiSource
    from audit_pipeline_tests.standins.hellojohn_api import DEFAULT_KEY

    start = time.perf_counter()
    with HelloJohnApiSource(base_url, DEFAULT_KEY, api_read="export" if api_read == "export" else "list") as source:
        rows = sum(batch.num_rows for batch in source.iter_batches(TimeRange.for_day(DAY)))
        requests = source.requests
    return {"seconds": time.perf_counter() - start, "events": rows, "requests": requests}


def phase_export(_: int, base_url: str) -> dict[str, float]:
    return _read_day("export", base_url)


def phase_list(_: int, base_url: str) -> dict[str, float]:
    return _read_day("list", base_url)


PHASES = {
    "docs_script": phase_docs_script,
    "ours": phase_ours,
    "ours_export": phase_ours_export,
    "copy": phase_copy,
    "export_csv": phase_export_csv,
    "export": phase_export,
    "list": phase_list,
}


def _load_day(url: str, events: int) -> None:
    """``events`` synthetic events on 2024-01-15 in audit_logs (kept when the count already matches)."""
    import psycopg

    from benchmarks.synthetic_sql import DDL, generate_sql

    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT to_regclass('audit_logs') IS NOT NULL").fetchone()
        if have and have[0]:
            count = conn.execute("SELECT count(*) FROM audit_logs").fetchone()
            if count and count[0] == events:
                return
            conn.execute("DROP TABLE audit_logs")
        conn.execute(DDL)
        conn.execute(generate_sql(events))
        conn.execute("ANALYZE audit_logs")


def _api_database(url: str | None) -> str:
    import psycopg

    if url:
        return url
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'audit_bench_api'").fetchone():
            conn.execute("CREATE DATABASE audit_bench_api")
    return "postgresql://postgres@127.0.0.1:5432/audit_bench_api"


def _read_c(results: dict[str, dict[str, float]], name: str, phase: str, events: int, base_url: str) -> None:
    f = results[name] = run_child(phase, events, base_url)
    assert f["events"] == events, (name, f)
    print(f"{name:<42}{f['requests']:>9,.0f}{f['seconds']:>9.1f}{events / f['seconds']:>11,.0f}{f['peak_mb']:>9.0f}", flush=True)


def part_c(sizes: list[int], database_url: str | None, skip_list_above: int) -> None:
    from audit_pipeline_tests.standins.hellojohn_api import serve_hellojohn_api

    url = _api_database(database_url)
    for events in sizes:
        print(f"== C. one day of {events:,} events from the HelloJohn stand-in over HTTP (loading...)", flush=True)
        _load_day(url, events)
        print(f"{'read':<42}{'requests':>9}{'seconds':>9}{'events/s':>11}{'peak MB':>9}", flush=True)
        results: dict[str, dict[str, float]] = {}
        with serve_hellojohn_api(url) as api:
            _read_c(results, "export endpoint (api_read: export)", "export", events, api.base_url)
            if events <= skip_list_above:
                _read_c(results, "paged list (api_read: list)", "list", events, api.base_url)
        if events > 100_000:
            with serve_hellojohn_api(url, export_row_cap=100_000) as api:
                _read_c(results, "export, server capping at 100,000 rows", "export", events, api.base_url)
        export, listed = results["export endpoint (api_read: export)"], results.get("paged list (api_read: list)")
        if listed:
            print(f"paged list / export: {listed['requests'] / export['requests']:,.0f}x the requests, {listed['seconds'] / export['seconds']:.1f}x the time")
        minutes = events / PAGE / READS_PER_MINUTE
        print(
            f"at HelloJohn's documented {READS_PER_MINUTE:,} reads a minute the paged list needs at least {minutes:.1f} min for its requests alone\n",
            flush=True,
        )


def run_child(phase: str, events: int, url: str) -> dict[str, float]:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.hellojohn_api_bench", "--phase", phase, "--events", str(events), "--database-url", url],
        capture_output=True,
        text=True,
        check=False,
        cwd=root,
    )
    if done.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{done.stderr[-4000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day-events", default="200000,1000000", help="events of the day read in part C, comma-separated sizes (empty skips part C)")
    parser.add_argument("--list-up-to", type=int, default=10_000_000, help="part C reads through the paged list only days up to this size")
    parser.add_argument("--events", default="", help="events paged through in part A; several comma-separated sizes show memory flatness (empty skips A)")
    parser.add_argument("--rows", type=int, default=0, help="rows in the day exported in part B (0 skips part B)")
    parser.add_argument("--database-url", default="", help="PostgreSQL for part B (default: the scratch database audit_bench on 127.0.0.1:5432)")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        figures = PHASES[args.phase](int(args.events), args.database_url)
        figures["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return

    if args.day_events:
        part_c([int(n) for n in args.day_events.split(",")], args.database_url or None, args.list_up_to)
    ceiling = READS_PER_MINUTE * PAGE / 60
    for events in [int(n) for n in args.events.split(",") if n]:
        print(f"== A. HelloJohn API source, {events:,} events in pages of {PAGE}, served from memory")
        docs = run_child("docs_script", events, "")
        ours = run_child("ours", events, "")
        streamed = run_child("ours_export", events + 1, "")  # not a round number: one response, no confirming request
        assert docs["events"] == ours["events"] == events and streamed["events"] == events + 1
        print(f"{'phase':<46}{'seconds':>9}{'events/s':>12}{'client MB':>11}")
        for name, f in (
            ("docs' nightly script (json.loads + dumps)", docs),
            ("ours: exact rows -> Arrow -> NDJSON", ours),
            ("ours, export stream (gzip NDJSON)", streamed),
        ):
            print(f"{name:<46}{f['seconds']:>9.2f}{f['events'] / f['seconds']:>12,.0f}{f['growth_mb']:>11.0f}")
        print(f"ours / docs' script wall time: {ours['seconds'] / docs['seconds']:.2f}x")
        print(
            f"export stream: {streamed['cpu'] / streamed['events'] * 1e6:.0f} us of CPU per event ({streamed['events'] / streamed['cpu']:,.0f} events/s on one core)"
        )
        print(f"HelloJohn's documented read limit allows {ceiling:,.0f} events/s; ours processes {ours['events'] / ours['seconds'] / ceiling:.1f}x that\n")

    if args.rows:
        from benchmarks.export_bench import _database, load

        url = _database(args.database_url or None)
        print(f"\n== B. audit-pipeline export --format csv, one day of {args.rows:,} rows (loading...)", flush=True)
        load(url, args.rows)
        copy = run_child("copy", 0, url)
        export = run_child("export_csv", 0, url)
        print(f"{'phase':<46}{'seconds':>9}{'rows/s':>12}{'peak MB':>10}")
        for name, f in (("COPY ... TO STDOUT (FORMAT csv) (floor)", copy), ("ours: audit-pipeline export --format csv", export)):
            print(f"{name:<46}{f['seconds']:>9.2f}{args.rows / f['seconds']:>12,.0f}{f['peak_mb']:>10.0f}")
        print(f"ours / COPY wall time: {export['seconds'] / copy['seconds']:.2f}x")


if __name__ == "__main__":
    main()
