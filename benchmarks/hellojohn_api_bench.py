"""HelloJohn API source and ad-hoc export benchmark, each against a baseline measured in the same run.

A. The API source's own work per event.  N synthetic events are cut into pages of 200 in the
   documented ``{"data": [...], "meta": {"cursor": ...}}`` shape and served from memory
   (``httpx.MockTransport``), so neither a server nor a network is timed.  Baseline: the
   documentation's nightly script, i.e. ``json.loads`` each page and ``json.dumps`` each
   event into a list.  Ours: ``HelloJohnApiSource.iter_batches`` (exact numbers, jsonb
   text, order and repeat guards, Arrow batches) plus the NDJSON encoding of each batch.
   Each runs in its own process; "client MB" is its peak RSS growth once the pages exist.
B. ``audit-pipeline export --format csv`` of one day from PostgreSQL against PostgreSQL's
   own ``COPY (SELECT ...) TO STDOUT (FORMAT csv)`` of the same day (the floor).

    python -m benchmarks.hellojohn_api_bench [--events 100000,300000] [--rows 500000] [--database-url URL]

Prints events/s, memory (A: the client's growth over the pages it is served; B: peak RSS) and
the ratios ours / baseline.
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
    from audit_pipeline.encoding import encode_ndjson
    from audit_pipeline.sources import TimeRange
    from audit_pipeline.sources.hellojohn_api import HelloJohnApiSource
    from audit_pipeline.sources.hellojohn_events import RowBuffer

    RowBuffer().take_batch()  # warm up: pyarrow's lazy imports are not per-event work
    source = HelloJohnApiSource("https://auth.example.com", "sk_bench", transport=_transport(_pages(events)))
    before = _rss_mb()
    start = time.perf_counter()
    rows = nbytes = 0
    for batch in source.iter_batches(TimeRange.for_day(DAY)):
        rows += batch.num_rows
        nbytes += len(encode_ndjson(batch))
    return {"seconds": time.perf_counter() - start, "events": rows, "ndjson_bytes": nbytes, "growth_mb": _peak_mb() - before}


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
    from audit_pipeline.range_export import write_range
    from audit_pipeline.sources import TimeRange
    from audit_pipeline.sources.postgres import PostgresSource

    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, PostgresSource(url) as source:
        result = write_range(source, TimeRange.for_day(DAY), "csv", out)
        size = out.tell()
    return {"seconds": time.perf_counter() - start, "bytes": size, "events": result.rows}


PHASES = {"docs_script": phase_docs_script, "ours": phase_ours, "copy": phase_copy, "export_csv": phase_export_csv}


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
    parser.add_argument("--events", default="100000", help="events paged through in part A; several comma-separated sizes show memory flatness")
    parser.add_argument("--rows", type=int, default=500_000, help="rows in the day exported in part B (0 skips part B)")
    parser.add_argument("--database-url", default="", help="PostgreSQL for part B (default: the scratch database audit_bench on 127.0.0.1:5432)")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        figures = PHASES[args.phase](int(args.events), args.database_url)
        figures["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return

    ceiling = READS_PER_MINUTE * PAGE / 60
    for events in [int(n) for n in args.events.split(",")]:
        print(f"== A. HelloJohn API source, {events:,} events in pages of {PAGE}, served from memory")
        docs = run_child("docs_script", events, "")
        ours = run_child("ours", events, "")
        assert docs["events"] == ours["events"] == events
        print(f"{'phase':<46}{'seconds':>9}{'events/s':>12}{'client MB':>11}")
        for name, f in (("docs' nightly script (json.loads + dumps)", docs), ("ours: exact rows -> Arrow -> NDJSON", ours)):
            print(f"{name:<46}{f['seconds']:>9.2f}{f['events'] / f['seconds']:>12,.0f}{f['growth_mb']:>11.0f}")
        print(f"ours / docs' script wall time: {ours['seconds'] / docs['seconds']:.2f}x")
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
