"""Export benchmark: our one-pass CSV+NDJSON+Parquet export against COPY and a naive pandas export.

Loads N synthetic rows (default 1,000,000, all on 2024-01-15 UTC) into the PostgreSQL it is
pointed at, then times, in the same run and each in its own process (so peak memory is
its own): PostgreSQL's ``COPY (SELECT ...) TO STDOUT (FORMAT csv)`` of that day into a file
(the floor), a naive pandas export (``read_sql`` whole, then ``to_csv``, ``to_json(lines=True)``,
``to_parquet``) and our export of all three formats.  Prints rows/s, peak RSS and ratios.

    python benchmarks/export_bench.py [--rows 1000000] [--database-url postgresql://postgres@127.0.0.1:5432/audit_bench]
    python benchmarks/export_bench.py --rows 1000000,5000000 --skip-pandas   # memory flatness
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

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from anywhere
from benchmarks.synthetic_sql import DDL, generate_sql

DAY = dt.date(2024, 1, 15)
SELECT = (
    "SELECT id, type, actor_id, actor_email, actor_type, resource_id, resource_type, tenant_id, organization_id,"
    " ip_address, country, result, created_at, metadata FROM audit_logs"
    " WHERE created_at >= '2024-01-15T00:00:00Z' AND created_at < '2024-01-16T00:00:00Z' ORDER BY created_at, id"
)


def _database(url: str | None) -> str:
    if url:
        return url
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'audit_bench'").fetchone():
            conn.execute("CREATE DATABASE audit_bench")
    return "postgresql://postgres@127.0.0.1:5432/audit_bench"


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
    from audit_pipeline.export import export_day
    from audit_pipeline.settings import ExportSettings
    from audit_pipeline.sources.postgres import PostgresSource
    from audit_pipeline.storage import ObjectStore

    with PostgresSource(url) as source:
        result = export_day(source, ObjectStore(str(out / "ours")), DAY, ExportSettings())
    return {"bytes": sum(o.bytes for o in result.objects), "rows": result.rows}


PHASES = {"copy": phase_copy, "pandas": phase_pandas, "ours": phase_ours}


def run_child(phase: str, url: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        done = subprocess.run([sys.executable, __file__, "--phase", phase, "--database-url", url, "--out", tmp], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{done.stderr[-4000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000", help="rows in the day; several comma-separated sizes check memory flatness")
    parser.add_argument("--database-url", default=None, help="PostgreSQL to load into (default: a scratch database audit_bench on 127.0.0.1:5432)")
    parser.add_argument("--skip-pandas", action="store_true", help="skip the naive pandas baseline (it needs several GB)")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        start = time.perf_counter()
        extra = PHASES[args.phase](args.database_url, Path(args.out))
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, **extra}))
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
