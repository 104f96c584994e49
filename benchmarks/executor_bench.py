"""Executor benchmark: what one partition's run costs with a process per step against one process per run.

A backfill is one run per day, and an export run has ten steps (the export and nine checks), so
the per-run cost multiplies by the number of days.  Loads N rows (default 20,000) into one UTC day
of a scratch PostgreSQL database, then materializes that day with the README's
``dagster asset materialize`` command, in the same run:

* baseline: the multiprocess executor (Dagster's default; ``benchmarks/executor_defs.py``);
* ours: ``audit_pipeline.definitions``, the in-process executor.

Each is repeated ``--repeat`` times (default 2); prints the median wall time, the CPU time of the
command and its children, and the ratios ours/baseline.

    python -m benchmarks.executor_bench [--rows 20000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from benchmarks.synthetic_sql import DDL, generate_sql

ADMIN = os.environ.get("AUDIT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parents[1]
DAY = "2024-01-15"
ASSETS = "audit_logs_csv,audit_logs_ndjson,audit_logs_parquet"


def materialize(module: str, database_url: str, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds (children included) of one `dagster asset materialize` of the day."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_"))}
    env.update(AUDIT_DATABASE_URL=database_url, AUDIT_EXPORT_URL=str(out))
    # The documented DEBUG switch (dagster.yaml) shows RUN_SUCCESS on the terminal again.
    debug = json.dumps({"loggers": {"console": {"config": {"log_level": "DEBUG"}}}})
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "-m",
        module,
        "--select",
        ASSETS,
        "--partition",
        DAY,
        "--config-json",
        debug,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or "RUN_SUCCESS" not in done.stdout + done.stderr:
        raise SystemExit(f"{module} failed:\n{done.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    name = f"executor_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(DDL)
            conn.execute(generate_sql(args.rows))
        results: dict[str, list[tuple[float, float]]] = {"baseline": [], "ours": []}
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.repeat):
                results["baseline"].append(materialize("benchmarks.executor_defs", url, Path(tmp) / f"base{i}"))
                results["ours"].append(materialize("audit_pipeline.definitions", url, Path(tmp) / f"ours{i}"))
        wall = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in results.items()}
        print(f"one partition ({args.rows:,} rows, 10 steps), median of {args.repeat}:")
        print(f"  baseline  multiprocess executor  wall {wall['baseline']:7.1f} s   cpu {cpu['baseline']:7.1f} s")
        print(f"  ours      in-process executor    wall {wall['ours']:7.1f} s   cpu {cpu['ours']:7.1f} s")
        print(f"  ratio ours/baseline              wall {wall['ours'] / wall['baseline']:7.2f}     cpu {cpu['ours'] / cpu['baseline']:7.2f}")
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
