"""Export benchmark: our one-pass CSV+NDJSON+Parquet export against COPY and a naive pandas export.

Loads N synthetic rows (default 1,000,000, all on 2024-01-15 UTC) into the PostgreSQL it is
pointed at, then times, in the same run and each in its own process (so peak memory is
its own): PostgreSQL's ``COPY (SELECT ...) TO STDOUT (FORMAT csv)`` of that day into a file
(the floor), a naive pandas export (``read_sql`` whole, then ``to_csv``, ``to_json(lines=True)``,
``to_parquet``) and our export of all three formats.  Prints rows/s, peak RSS and ratios.

    python benchmarks/export_bench.py [--rows 1000000] [--database-url postgresql://postgres@127.0.0.1:5432/audit_bench]
    python benchmarks/export_bench.py --rows 1000000,5000000 --skip-pandas   # memory flatness

``--command`` times the documented command itself instead of the core export: ``dg launch
--assets audit_logs_csv,audit_logs_ndjson,audit_logs_parquet --partition 2024-01-15`` (Dagster
start-up, the export and its checks), each run a separate process, interleaved with COPY of the
same day, median of ``--repeat`` (3) rounds (before every timed process the page cache's pending writes are
flushed, for COPY and the command alike); it prints per-step times, the peak RSS of the command's
whole process tree (psutil, sampled every 50 ms: the sum over the processes alive at once) and of its
largest process, and, with ``--store s3``, the bytes uploaded to and downloaded from moto's S3 over HTTP.

    python benchmarks/export_bench.py --command --rows 2000000 [--store local|s3] [--cli dg|dagster]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from anywhere
from benchmarks.synthetic_sql import DDL, generate_sql

DAY = dt.date(2024, 1, 15)
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ASSETS = "audit_logs_csv,audit_logs_ndjson,audit_logs_parquet"
#: The documented DEBUG switch (dagster.yaml): the terminal shows the run's step events again, whose
#: "Finished execution of step" lines give the per-step durations; it changes what is printed, not what runs.
STEP_EVENTS = ["--config-json", json.dumps({"loggers": {"console": {"config": {"log_level": "DEBUG"}}}})]
COMMANDS = {
    "dg": [str(BIN / "dg"), "launch", "--assets", ASSETS, "--partition", DAY.isoformat(), *STEP_EVENTS],
    "dagster": [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "audit_pipeline.definitions",
        "--select",
        ASSETS,
        "--partition",
        DAY.isoformat(),
        *STEP_EVENTS,
    ],
}
_STEP_DONE = re.compile(r'Finished execution of step "([^"]+)" in ([0-9.]+)(ms|s|m)(?:([0-9]+)s)?')
SELECT = (
    "SELECT id, type, actor_id, actor_email, actor_type, resource_id, resource_type, tenant_id, organization_id,"
    " ip_address, country, result, created_at, metadata FROM audit_logs"
    " WHERE created_at >= '2024-01-15T00:00:00Z' AND created_at < '2024-01-16T00:00:00Z' ORDER BY created_at, id"
)


def _database(url: str | None, name: str = "audit_bench") -> str:
    if url:
        return url
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def load(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT to_regclass('audit_logs') IS NOT NULL").fetchone()
        if have and have[0]:
            count = conn.execute("SELECT count(*) FROM audit_logs").fetchone()
            if count and count[0] == rows:
                return
            conn.execute("DROP TABLE audit_logs")
        conn.execute(DDL)
        conn.execute(generate_sql(rows, geo=True))
        conn.execute("ANALYZE audit_logs")


# -- phases, each run in a child process ----------------------------------------------------------
def phase_copy(url: str, out: Path) -> dict[str, float]:
    with (
        psycopg.connect(url) as conn,
        conn.cursor() as cur,
        open(out / "copy.csv", "wb") as handle,
        cur.copy(f"COPY ({SELECT}) TO STDOUT (FORMAT csv, HEADER)") as copy,
    ):
        for chunk in copy:
            handle.write(chunk)
    return {"bytes": (out / "copy.csv").stat().st_size}


def phase_pandas(url: str, out: Path) -> dict[str, float]:
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    frame = pd.read_sql(sa.text(SELECT), engine)
    frame["ip_address"] = frame["ip_address"].map(lambda v: None if v is None else str(v))
    frame.to_csv(out / "pandas.csv", index=False)
    frame.to_json(out / "pandas.ndjson", orient="records", lines=True, date_format="iso")
    frame["metadata"] = frame["metadata"].map(json.dumps)
    frame.to_parquet(out / "pandas.parquet")
    return {"bytes": sum((out / f).stat().st_size for f in ("pandas.csv", "pandas.ndjson", "pandas.parquet"))}


def phase_ours(url: str, out: Path) -> dict[str, float]:
    from audit_pipeline.config.settings import ExportSettings
    from audit_pipeline.exports.day import export_day
    from audit_pipeline.sources.postgres import PostgresSource
    from audit_pipeline.storage.object_store import ObjectStore

    with PostgresSource(url) as source:
        result = export_day(source, ObjectStore(str(out / "ours")), DAY, ExportSettings())
    return {"bytes": sum(o.bytes for o in result.objects), "rows": result.rows}


def _step_seconds(log: str) -> dict[str, float]:
    """Per-step durations from Dagster's STEP_SUCCESS lines ("... in 18.8s." / "533ms" / "1m2s")."""
    steps: dict[str, float] = {}
    for name, value, unit, extra in _STEP_DONE.findall(log):
        seconds = float(value) / 1000 if unit == "ms" else float(value) * 60 + float(extra or 0) if unit == "m" else float(value)
        steps[name] = seconds
    return steps


def phase_command(url: str, out: Path, cli: str = "dg", extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """The documented command, as a user runs it from the project root with only AUDIT_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_"))}
    env.update(AUDIT_DATABASE_URL=url, AUDIT_EXPORT_URL=str(out / "exports"))
    env.update(extra_env or {})
    with tempfile.TemporaryFile("w+") as output:
        command = subprocess.Popen(COMMANDS[cli], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
        tree_peak, largest_peak = _sample_tree_rss(command)
        output.seek(0)
        log = output.read()
    if command.returncode != 0 or "RUN_SUCCESS" not in log:
        raise SystemExit(f"the documented command failed ({command.returncode}):\n{log[-4000:]}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and every process it waited for (this phase runs one command)
    largest = max(largest_peak, children.ru_maxrss / 1024)
    cpu = children.ru_utime + children.ru_stime
    return {"steps": _step_seconds(log), "child_peak_mb": tree_peak, "largest_process_mb": largest, "cpu_seconds": cpu}


def _sample_tree_rss(command: subprocess.Popen[str], every: float = 0.05) -> tuple[float, float]:
    """Peak RSS of the command's whole process tree (the sum over the processes alive at each sample) and
    of its largest single process, in MB, sampled with psutil until the command exits."""
    import psutil

    root = psutil.Process(command.pid)
    tree_peak = largest_peak = 0
    while command.poll() is None:
        total = 0
        try:
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for process in processes:
            try:
                rss = process.memory_info().rss
            except psutil.Error:  # exited between the listing and the reading
                continue
            total += rss
            largest_peak = max(largest_peak, rss)
        tree_peak = max(tree_peak, total)
        time.sleep(every)
    command.wait()
    return tree_peak / 2**20, largest_peak / 2**20


PHASES = {"copy": phase_copy, "pandas": phase_pandas, "ours": phase_ours, "command": phase_command}


def _settle_writes(limit_mb: int = 32, patience: float = 60.0) -> None:
    """Flush what the previous phase left in the page cache before the next one is timed: every phase (COPY
    and ours alike) starts with the disk idle, not paying for the writeback of the gigabytes before it."""
    os.sync()
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
            pending_kb = int(fields["Dirty"].split()[0]) + int(fields["Writeback"].split()[0])
        except (OSError, KeyError, ValueError):
            return  # not Linux: os.sync() is all there is
        if pending_kb < limit_mb * 1024:
            return
        time.sleep(0.2)


def run_child(phase: str, url: str, extra: list[str] | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    _settle_writes()
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        done = subprocess.run(
            [sys.executable, __file__, "--phase", phase, "--database-url", url, "--out", tmp, *(extra or [])],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **(env or {})},
        )
    if done.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _s3_target() -> tuple[Any, dict[str, str]]:
    """moto's S3 over HTTP in this process, counting bytes each way; the settings that point an export at it."""
    import logging

    import boto3

    from audit_pipeline_tests.standins.counting_s3 import CountingS3Server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    server = CountingS3Server().start()
    bucket = f"audit-bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1").create_bucket(Bucket=bucket)
    env = {"BENCH_S3_ENDPOINT_URL": server.endpoint_url, "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"]}
    env["AWS_SECRET_ACCESS_KEY"] = os.environ["AWS_SECRET_ACCESS_KEY"]
    env["AWS_DEFAULT_REGION"] = os.environ["AWS_DEFAULT_REGION"]
    env["BENCH_S3_URL"] = f"s3://{bucket}/bench"
    return server, env


def _log_config(folder: Path, on: bool) -> dict[str, str]:
    """``AUDIT_CONFIG`` for a run with the transparency log on or off (nothing else set: the defaults)."""
    path = folder / f"log-{'on' if on else 'off'}.yaml"
    path.write_text(f"integrity:\n  transparency_log: {'true' if on else 'false'}\n", encoding="utf-8")
    return {"AUDIT_CONFIG": str(path)}


def command_mode(url: str, rows: int, repeat: int, store: str, cli: str, compare_log: bool = False) -> None:
    """The documented command against COPY of the same day, interleaved, median of ``repeat`` rounds.

    ``compare_log``: every round also runs the command with the transparency log turned off
    (``integrity.transparency_log: false``), alternating which goes first, and prints the time the log adds."""
    server, env = _s3_target() if store == "s3" else (None, {})
    copies: list[float] = []
    runs: list[dict[str, Any]] = []
    without_log: list[float] = []
    without_log_cpu: list[float] = []
    configs = Path(tempfile.mkdtemp(prefix="audit-bench-config-"))
    for round_number in range(1, repeat + 1):
        copy = run_child("copy", url)
        if compare_log and round_number % 2:
            off = run_child("command", url, ["--cli", cli], {**env, **_log_config(configs, False)})
            without_log.append(off["seconds"])
            without_log_cpu.append(off["cpu_seconds"])
        if server is not None:
            server.reset()
        ours = run_child("command", url, ["--cli", cli], {**env, **(_log_config(configs, True) if compare_log else {})})
        if compare_log and not round_number % 2:
            off = run_child("command", url, ["--cli", cli], {**env, **_log_config(configs, False)})
            without_log.append(off["seconds"])
            without_log_cpu.append(off["cpu_seconds"])
        if server is not None:
            ours["bytes_up"], ours["bytes_down"] = server.totals()
        copies.append(copy["seconds"])
        runs.append(ours)
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in ours["steps"].items())
        print(
            f"round {round_number}: COPY {copy['seconds']:.2f} s; command {ours['seconds']:.2f} s ({steps}),"
            f" peak {ours['child_peak_mb']:.0f} MB (largest process {ours['largest_process_mb']:.0f} MB)"
            + (f"; without the transparency log {without_log[-1]:.2f} s" if compare_log else ""),
            flush=True,
        )
    shutil.rmtree(configs, ignore_errors=True)
    copy_s = statistics.median(copies)
    total = statistics.median(r["seconds"] for r in runs)
    step_names = sorted({k for r in runs for k in r["steps"]})
    # A step without a STEP_SUCCESS line in some round (not reported by Dagster) is left out of its median, and said so.
    median_steps = {k: statistics.median(r["steps"][k] for r in runs if k in r["steps"]) for k in step_names}
    for name in step_names:
        missing = sum(1 for r in runs if name not in r["steps"])
        if missing:
            print(f"note: step {name} reported no duration in {missing} of {repeat} rounds; its median is of the others")
    peak = max(r["child_peak_mb"] for r in runs)
    largest = max(r["largest_process_mb"] for r in runs)
    print(f"\n{rows:,} rows on {DAY}, {store} store, `{' '.join(COMMANDS[cli][:2])} ...`, median of {repeat}")
    print(f"{'':<40}{'seconds':>9}{'x COPY':>9}")
    print(f"{'COPY (SELECT ...) TO STDOUT (FORMAT csv)':<40}{copy_s:>9.2f}{1:>9.2f}")
    print(f"{'the documented command, whole':<40}{total:>9.2f}{total / copy_s:>9.2f}   (target <= 1.5x, at most 2.0x)")
    for name, seconds in median_steps.items():
        note = "   (target <= 1.3x)" if name == "audit_logs_daily_export" else ""
        print(f"{'  step ' + name:<40}{seconds:>9.2f}{seconds / copy_s:>9.2f}{note}")
    overhead = total - sum(median_steps.values())
    print(f"{'  start-up, run bookkeeping, exit':<40}{overhead:>9.2f}{overhead / copy_s:>9.2f}")
    print(f"peak RSS of the command's process tree (sum of its processes alive at once): {peak:.0f} MB (target <= 300 MB); largest process {largest:.0f} MB")
    if compare_log:
        off_s = statistics.median(without_log)
        print(f"the command without the transparency log: {off_s:.2f} s; the log adds {total - off_s:+.2f} s ({(total / off_s - 1) * 100:+.1f}%, target <= 5%)")
        pairs = [(r["seconds"] / o - 1) * 100 for r, o in zip(runs, without_log, strict=True)]
        print(f"  per round (with / without - 1): {', '.join(f'{p:+.1f}%' for p in pairs)}")
        cpu_on, cpu_off = statistics.median(r["cpu_seconds"] for r in runs), statistics.median(without_log_cpu)
        print(
            f"CPU seconds of the command's processes (PostgreSQL's not included): {cpu_on:.2f} with the log, {cpu_off:.2f} without"
            f" ({(cpu_on / cpu_off - 1) * 100:+.1f}%); on a busy machine the CPU added is the time added"
        )
    if server is not None:
        up = statistics.median(r["bytes_up"] for r in runs)
        down = statistics.median(r["bytes_down"] for r in runs)
        print(f"S3 (moto over HTTP): {up / 1e6:,.1f} MB uploaded, {down / 1e6:,.3f} MB downloaded ({down / up * 100:.3f}% of uploaded)")
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000", help="rows in the day; several comma-separated sizes check memory flatness")
    parser.add_argument("--database-url", default=None, help="PostgreSQL to load into (default: a scratch database audit_bench on 127.0.0.1:5432)")
    parser.add_argument("--skip-pandas", action="store_true", help="skip the naive pandas baseline (it needs several GB)")
    parser.add_argument("--command", action="store_true", help="time the documented command (dg launch ...) against COPY instead of the core export")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the --command mode (median reported)")
    parser.add_argument("--store", choices=("local", "s3"), default="local", help="--command mode: a local folder or moto's S3 over HTTP")
    parser.add_argument("--cli", choices=sorted(COMMANDS), default="dg", help="--command mode: dg launch (documented) or dagster asset materialize")
    parser.add_argument(
        "--compare-log", action="store_true", help="--command mode: also run the command with the transparency log off each round; print the time it adds"
    )
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        start = time.perf_counter()
        if args.phase == "command":
            s3 = (
                {"AUDIT_EXPORT_URL": os.environ["BENCH_S3_URL"], "AUDIT_S3_ENDPOINT_URL": os.environ["BENCH_S3_ENDPOINT_URL"]}
                if os.environ.get("BENCH_S3_URL")
                else {}
            )
            extra = phase_command(args.database_url, Path(args.out), args.cli, s3)
        else:
            extra = PHASES[args.phase](args.database_url, Path(args.out))
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, **extra}))
        return

    if args.command:
        url = _database(args.database_url, "audit_bench_command")
        for rows in [int(r) for r in args.rows.split(",")]:
            print(f"\n== {rows:,} rows on {DAY} (loading...)", flush=True)
            load(url, rows)
            command_mode(url, rows, args.repeat, args.store, args.cli, args.compare_log)
        return

    url = _database(args.database_url)
    ours_by_size: dict[int, dict[str, float]] = {}
    for rows in [int(r) for r in args.rows.split(",")]:
        print(f"\n== {rows:,} rows on {DAY} (loading...)", flush=True)
        load(url, rows)
        copy = run_child("copy", url)
        ours = run_child("ours", url)
        ours_by_size[rows] = ours
        pandas = None if args.skip_pandas else run_child("pandas", url)
        print(f"{'phase':<34}{'seconds':>9}{'rows/s':>12}{'peak MB':>10}")
        for name, figures in (("COPY csv (floor, one format)", copy), ("ours: csv + ndjson + parquet", ours), ("naive pandas: 3 formats", pandas)):
            if figures is not None:
                print(f"{name:<34}{figures['seconds']:>9.2f}{rows / figures['seconds']:>12,.0f}{figures['peak_mb']:>10.0f}")
        print(f"ours / COPY wall time: {ours['seconds'] / copy['seconds']:.2f}x  (target <= 2.0x, aim 1.5x)")
        if pandas is not None:
            print(f"pandas / ours wall time: {pandas['seconds'] / ours['seconds']:.1f}x faster  (target >= 5x)")
            print(f"pandas / ours peak memory: {pandas['peak_mb'] / ours['peak_mb']:.1f}x")
    if len(ours_by_size) > 1:
        sizes = sorted(ours_by_size)
        low, high = ours_by_size[sizes[0]]["peak_mb"], ours_by_size[sizes[-1]]["peak_mb"]
        print(
            f"\npeak memory of ours: {low:.0f} MB at {sizes[0]:,} rows, {high:.0f} MB at {sizes[-1]:,} rows ({(high / low - 1) * 100:+.0f}%, target within 10%)"
        )


if __name__ == "__main__":
    main()
