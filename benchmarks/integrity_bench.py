"""Integrity benchmark: the cost of the entry chain, manifest and transparency log inside the daily export.

Generates N synthetic events (default 200,000, one UTC day) once, then times, in the same run
and alternating, ``export_day`` without integrity (the baseline) and with the sealing hooks
(one SHA-256 per event over the NDJSON lines, the CSV apostrophe scan, the manifest and its
Ed25519 signature).  By default the events come from memory, so the ratio shows the chain
against the export's own work; ``--postgres`` loads them into PostgreSQL (as
``export_bench.py`` does) and exports from there, the real setting.  Also times the chain
alone over the day's NDJSON bytes, and ``verify`` of the day.  The transparency log is timed twice:
hashed by its leaf worker process (the default) and on the export's NDJSON thread (``worker=False``);
CPU seconds include the worker's.

    python -m benchmarks.integrity_bench [--rows 200000] [--repeat 3] [--postgres [URL]]   (from the repository root)
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from audit_pipeline.config.sections.integrity import IntegritySettings
from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.core.event_filters import EventFilter
from audit_pipeline.core.jsontext import jsonb_text
from audit_pipeline.core.schema import ARROW_SCHEMA
from audit_pipeline.exports.day import export_day
from audit_pipeline.formats.encoding import encode_ndjson
from audit_pipeline.integrity.chain import EntryChain, line_offsets
from audit_pipeline.integrity.merkle import leaf_hashes
from audit_pipeline.integrity.proofs import LogAppender
from audit_pipeline.integrity.sealing import DaySealer
from audit_pipeline.integrity.signing import Ed25519Signer, Keyring
from audit_pipeline.integrity.tiles import TILE_BYTES
from audit_pipeline.integrity.treehash import subtree_roots
from audit_pipeline.integrity.verify import Verifier
from audit_pipeline.sources.base import AuditSource, Position, TimeRange
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage.object_store import ObjectStore

DAY = dt.date(2024, 1, 15)
BATCH_ROWS = 65_536


class MemorySource(AuditSource):
    """Pre-generated batches of one day: the export's cost without a database."""

    description = "memory"

    def __init__(self, batches: list[pa.RecordBatch]) -> None:
        self.batches = batches

    def check(self) -> None:
        return None

    def count(self, time_range: TimeRange, event_filter: EventFilter | None = None) -> int:
        return sum(b.num_rows for b in self.batches)

    def iter_batches(
        self, time_range: TimeRange, *, after: Position | None = None, limit: int | None = None, event_filter: EventFilter | None = None
    ) -> Iterator[pa.RecordBatch]:
        yield from self.batches


def make_batches(rows: int) -> list[pa.RecordBatch]:
    events = [{**e, "metadata": jsonb_text(e["metadata"])} for e in generate_events(DAY, rows)]
    table = pa.Table.from_pylist(events, schema=ARROW_SCHEMA)
    return table.to_batches(max_chunksize=BATCH_ROWS)


def time_export(source: AuditSource, sealed: bool, signer: Ed25519Signer, log: str | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all threads, and the leaf worker's) of one export into a fresh folder;
    ``log``: with the transparency log too, hashed by the leaf worker (``"worker"``, the default) or ``"inline"``."""
    with tempfile.TemporaryDirectory(prefix="integrity-bench-") as tmp:
        store = ObjectStore(str(Path(tmp) / "exports"))
        start, cpu = time.perf_counter(), _cpu()
        if sealed:
            sealer = DaySealer(store, DAY, IntegritySettings(), signer, formula_protection=True)
            if log:  # as DaySealer.from_settings attaches it
                sealer.tlog = LogAppender(store, DAY, signer, worker=log == "worker")
            export_day(source, store, DAY, ExportSettings(), **sealer.export_hooks())
            sealer.after_publish()
        else:
            export_day(source, store, DAY, ExportSettings())
        return time.perf_counter() - start, _cpu() - cpu


def _cpu() -> float:
    """CPU seconds of this process and of its waited-for children (the leaf worker)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", nargs="?", const="", default=None, metavar="URL", help="export from PostgreSQL (default: scratch database audit_bench)")
    args = parser.parse_args()

    print(f"generating {args.rows:,} events of {DAY} ...", flush=True)
    memory = MemorySource(make_batches(args.rows))
    source: AuditSource = memory
    if args.postgres is not None:
        from audit_pipeline.sources.postgres import PostgresSource
        from benchmarks.export_bench import _database, load

        url = _database(args.postgres or None)
        load(url, args.rows)
        source = PostgresSource(url)
    signer = Ed25519Signer.generate()
    time_export(source, True, signer)  # warm-up: imports, allocator, page cache

    plain: list[tuple[float, float]] = []
    sealed: list[tuple[float, float]] = []
    logged: list[tuple[float, float]] = []
    inline: list[tuple[float, float]] = []
    for _ in range(args.repeat):
        plain.append(time_export(source, False, signer))
        sealed.append(time_export(source, True, signer))
        logged.append(time_export(source, True, signer, log="worker"))
        inline.append(time_export(source, True, signer, log="inline"))
    with_log, with_log_cpu = statistics.median(s[0] for s in logged), statistics.median(s[1] for s in logged)
    with_inline, with_inline_cpu = statistics.median(s[0] for s in inline), statistics.median(s[1] for s in inline)
    base, with_chain = statistics.median(p[0] for p in plain), statistics.median(s[0] for s in sealed)
    base_cpu, with_chain_cpu = statistics.median(p[1] for p in plain), statistics.median(s[1] for s in sealed)

    chunks = [encode_ndjson(b) for b in memory.batches]
    size = sum(len(c) for c in chunks)
    start, cpu = time.perf_counter(), time.process_time()
    chain = EntryChain()
    for chunk in chunks:
        chain.update(chunk, line_offsets(chunk))
    alone, alone_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    hashes = b"".join(leaf_hashes(chunk, line_offsets(chunk)) for chunk in chunks)
    leaves, leaves_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    whole = len(hashes) // TILE_BYTES * TILE_BYTES
    subtree_roots(hashes[:whole], 8)  # the tree's lower eight levels, a level at a time (the rest is 1/256 of it)
    levels, levels_cpu = time.perf_counter() - start, time.process_time() - cpu

    with tempfile.TemporaryDirectory(prefix="integrity-bench-") as tmp:
        store = ObjectStore(str(Path(tmp) / "exports"))
        sealer = DaySealer(store, DAY, IntegritySettings(), signer, formula_protection=True)
        export_day(source, store, DAY, ExportSettings(), **sealer.export_hooks())
        sealer.after_publish()
        start, cpu = time.perf_counter(), time.process_time()
        (report,) = Verifier(store, Keyring.for_signer(signer)).verify_range()
        verify_seconds, verify_cpu = time.perf_counter() - start, time.process_time() - cpu
        assert report.ok, report.problems

    print(f"\n{args.rows:,} events from {source.description}, median of {args.repeat} alternating runs ({size / 1e6:.0f} MB of NDJSON in memory)")
    print(f"{'':<40}{'seconds':>9}{'events/s':>12}{'CPU s':>9}")
    print(f"{'export_day, no integrity (baseline)':<40}{base:>9.2f}{args.rows / base:>12,.0f}{base_cpu:>9.2f}")
    print(f"{'export_day + chain + signed manifest':<40}{with_chain:>9.2f}{args.rows / with_chain:>12,.0f}{with_chain_cpu:>9.2f}")
    print(f"{'... + transparency log (leaf worker)':<40}{with_log:>9.2f}{args.rows / with_log:>12,.0f}{with_log_cpu:>9.2f}")
    print(f"{'... + transparency log hashed in-process':<40}{with_inline:>9.2f}{args.rows / with_inline:>12,.0f}{with_inline_cpu:>9.2f}")
    print(f"{'Merkle leaf hashes alone':<40}{leaves:>9.2f}{args.rows / leaves:>12,.0f}{leaves_cpu:>9.2f}")
    print(f"{'tree levels 1-8 alone (a level at a time)':<40}{levels:>9.2f}{args.rows / levels:>12,.0f}{levels_cpu:>9.2f}")
    print(f"{'chain alone over the NDJSON lines':<40}{alone:>9.2f}{args.rows / alone:>12,.0f}{alone_cpu:>9.2f}")
    print(f"{'verify the day (3 formats re-derived)':<40}{verify_seconds:>9.2f}{args.rows / verify_seconds:>12,.0f}{verify_cpu:>9.2f}")
    print(f"\nwith integrity / without: {with_chain / base:.2f}x wall time, {with_chain_cpu / base_cpu:.2f}x CPU time")
    print(f"transparency log on top of the sealed export: {with_log / with_chain:.3f}x wall time, {with_log_cpu / with_chain_cpu:.3f}x CPU time (leaf worker)")
    print(f"{'':<46}{with_inline / with_chain:.3f}x wall time, {with_inline_cpu / with_chain_cpu:.3f}x CPU time (in-process)")
    print(f"chain alone: {alone_cpu / args.rows * 1e9:,.0f} ns of CPU per event, {alone_cpu / args.rows * 2_000_000:.1f} s for 2,000,000 events")


if __name__ == "__main__":
    main()
