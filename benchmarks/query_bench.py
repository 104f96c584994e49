"""``audit-pipeline query`` benchmark: the documented command against two baselines in the same run.

A local archive of ``--days`` days of ``--rows`` synthetic events each is written with DuckDB in the
export layout (``parquet/date=YYYY-MM-DD/audit_logs.parquet``, the 14 columns).  Then, each in its own
process (so its peak RSS is its own), the whole archive is written out as NDJSON by

* ours: ``audit-pipeline query "SELECT * FROM audit_logs" --format ndjson -o FILE`` (batches streamed out);
* the floor: DuckDB's own ``COPY (SELECT * FROM read_parquet(...)) TO FILE (FORMAT json)`` (C++ only);
* the usual script: ``duckdb.sql(...).df().to_json(FILE, orient="records", lines=True)`` (the whole
  result in pandas first).

That pruning on ``date`` opens only the queried days' files is shown by the tests
(``audit_pipeline_tests/analysis/test_query.py``), which count the objects opened.

    python -m benchmarks.query_bench [--days 10] [--rows 300000]

Prints seconds, rows/s, peak RSS and the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST_DAY = dt.date(2024, 1, 1)
_WRAPPER = "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"


def write_archive(root: Path, days: int, rows: int) -> None:
    """Synthetic days in the export layout, written by DuckDB (seconds, not minutes)."""
    import duckdb

    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        for n in range(days):
            day = FIRST_DAY + dt.timedelta(days=n)
            target = root / "parquet" / f"date={day}" / "audit_logs.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            connection.execute(
                f"""COPY (
                    SELECT 'alog_{day:%Y%m%d}' || lpad(i::VARCHAR, 10, '0') AS id,
                           ['user.login', 'user.login_failed', 'user.logout', 'token.refreshed', 'role.assigned'][1 + i % 5] AS type,
                           'use_' || lpad((i % 5000)::VARCHAR, 8, '0') AS actor_id,
                           'user' || (i % 5000) || '@example.com' AS actor_email,
                           'user' AS actor_type, 'ses_' || i AS resource_id, 'session' AS resource_type,
                           'ten_' || lpad((i % 20)::VARCHAR, 4, '0') AS tenant_id, 'org_' || (i % 200) AS organization_id,
                           (1 + i % 223) || '.' || (i % 256) || '.' || ((i * 7) % 256) || '.' || (1 + (i * 13) % 254) AS ip_address,
                           ['US', 'DE', 'FR', 'BR', 'IN', 'JP'][1 + i % 6] AS country,
                           CASE WHEN i % 10 = 0 THEN 'failure' ELSE 'success' END AS result,
                           TIMESTAMPTZ '{day} 00:00:00+00' + to_microseconds((i * (86400000000 // {rows}))::BIGINT) AS created_at,
                           '{{"request_id": "req_' || i || '", "user_agent": "okhttp/4.12.0"}}' AS metadata
                    FROM range({rows}) t(i)
                ) TO '{target}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"""
            )


def measured(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``command`` run alone under a small wrapper process."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *command], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{command[0]} failed: {done.stderr.strip()}")
    return seconds, int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--rows", type=int, default=300_000, help="events per day")
    args = parser.parse_args()
    total = args.days * args.rows
    command = str(Path(sys.executable).with_name("audit-pipeline"))
    with tempfile.TemporaryDirectory(prefix="query-bench-") as scratch:
        root = Path(scratch)
        archive = root / "archive"
        write_archive(archive, args.days, args.rows)
        size = sum(p.stat().st_size for p in archive.rglob("*.parquet"))
        print(f"{args.days} days × {args.rows:,} events = {total:,} events, {size / 1e6:.0f} MB of Parquet")
        env = {**os.environ, "AUDIT_EXPORT_URL": str(archive), "AUDIT_CONFIG": str(root / "none.yaml")}
        (root / "none.yaml").write_text("{}\n")
        glob = f"{archive}/parquet/date=*/*.parquet"
        runs = {
            "ours (audit-pipeline query)": [command, "query", "SELECT * FROM audit_logs", "--format", "ndjson", "-o", str(root / "ours.ndjson")],
            "floor (DuckDB COPY)": [
                sys.executable,
                "-c",
                f"import duckdb; duckdb.sql(\"COPY (SELECT * FROM read_parquet('{glob}', hive_partitioning = true)) TO '{root / 'copy.ndjson'}' (FORMAT json)\")",
            ],
            "usual (DuckDB → pandas → to_json)": [
                sys.executable,
                "-c",
                f"import duckdb; duckdb.sql(\"SELECT * FROM read_parquet('{glob}', hive_partitioning = true)\").df()"
                f".to_json('{root / 'pandas.ndjson'}', orient='records', lines=True)",
            ],
        }
        results = {}
        for name, argv in runs.items():
            seconds, peak = measured(argv, root, env)
            results[name] = (seconds, peak)
            print(f"{name:36} {seconds:7.2f} s  {total / seconds:>10,.0f} events/s  peak RSS {peak:6.0f} MB", flush=True)
        ours_s, ours_mb = results["ours (audit-pipeline query)"]
        floor_s, floor_mb = results["floor (DuckDB COPY)"]
        usual_s, usual_mb = results["usual (DuckDB → pandas → to_json)"]
        print(f"ours / floor: {ours_s / floor_s:.2f}x the time, {ours_mb / floor_mb:.2f}x the memory")
        print(f"usual / ours: {usual_s / ours_s:.2f}x the time, {usual_mb / ours_mb:.2f}x the memory")


if __name__ == "__main__":
    main()
