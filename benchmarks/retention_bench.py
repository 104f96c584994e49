"""Retention benchmark: batched deletes by exported id against the one-statement cron DELETE.

Loads N rows (default 300,000) spread over D UTC days (default 6) into a scratch PostgreSQL
database, exports every day (Parquet is where retention reads the ids from), copies the
table to a twin, then in the same run:

* baseline: ``DELETE FROM twin WHERE created_at < cutoff`` in one statement, HelloJohn's
  documented cron job;
* ours: :meth:`RetentionDatabase.delete_ids` for every day, ids streamed from the day's
  Parquet export, ``--batch-rows`` per statement (default 10,000), each committed.

Prints total time, the longest single statement (how long row locks and the transaction
are held) and the WAL written, with ratios ours/baseline.

    python benchmarks/retention_bench.py [--rows 300000] [--days 6] [--batch-rows 10000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from pydantic import SecretStr

from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.exports.day import export_day
from audit_pipeline.retention.database import RetentionDatabase
from audit_pipeline.retention.export_objects import ExportObject, exported_ids
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.storage.object_store import ObjectStore

ADMIN = os.environ.get("AUDIT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FIRST = dt.date(2024, 1, 1)
SCHEMA = Path(__file__).resolve().parents[1] / "audit_pipeline_tests" / "fixtures" / "audit_logs.sql"
DDL = "CREATE INDEX {table}_created_at_idx ON {table} (created_at); ALTER TABLE {table} ADD PRIMARY KEY (id)"


def _url(name: str) -> str:
    return ADMIN.rsplit("/", 1)[0] + "/" + name


def load(url: str, rows: int, days: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA.read_text())
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(
            """
            INSERT INTO audit_logs (id, type, actor_id, actor_email, actor_type, resource_id, resource_type, tenant_id, organization_id,
                                    ip_address, country, result, created_at, metadata)
            SELECT 'alog_' || lpad(g::text, 10, '0') || substr(md5(g::text), 1, 16), 'user.login', 'usr_' || (g %% 5000), 'u' || (g %% 5000) || '@example.com',
                   'user', 'ses_' || g, 'session', 'ten_0001', 'org_0001', '10.0.0.1'::inet, 'DE', 'success',
                   %s::timestamptz + make_interval(secs => (g::float8 / %s) * 86400 * %s), jsonb_build_object('agent', 'okhttp/4.12.0', 'n', g)
            FROM generate_series(0, %s - 1) AS g
            """,
            (dt.datetime(FIRST.year, FIRST.month, FIRST.day, tzinfo=dt.UTC), rows, days, rows),
        )
        conn.execute("CREATE TABLE twin (LIKE audit_logs INCLUDING DEFAULTS)")
        conn.execute("INSERT INTO twin SELECT * FROM audit_logs")
        conn.execute(DDL.format(table="twin"))
        conn.execute("VACUUM ANALYZE audit_logs")
        conn.execute("VACUUM ANALYZE twin")


def wal_position(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetchone()
    assert row is not None
    return int(row[0])


def baseline(url: str, cutoff: dt.date) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        wal = wal_position(conn)
        start = time.perf_counter()
        deleted = conn.execute("DELETE FROM twin WHERE created_at < %s", (dt.datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=dt.UTC),)).rowcount
        seconds = time.perf_counter() - start
        return {"rows": deleted, "seconds": seconds, "longest_statement": seconds, "statements": 1, "wal_bytes": wal_position(conn) - wal}


def ours(url: str, store: ObjectStore, days: list[dt.date], batch_rows: int) -> dict[str, float]:
    statements: list[float] = []

    def timed(batches: Iterator[list[str]]) -> Iterator[list[str]]:
        for batch in batches:
            started = time.perf_counter()
            yield batch  # delete_ids runs (and commits) this batch's statement before asking for the next
            statements.append(time.perf_counter() - started)

    with psycopg.connect(url, autocommit=True) as conn:
        wal = wal_position(conn)
    deleted = 0
    start = time.perf_counter()
    with RetentionDatabase(SecretStr(url)) as database:
        for day in days:
            parquet = ExportObject("parquet", day, f"parquet/date={day}/audit_logs.parquet")
            deleted += database.delete_ids(day, timed(exported_ids(store, parquet, batch_rows, {})))
    seconds = time.perf_counter() - start
    with psycopg.connect(url, autocommit=True) as conn:
        written = wal_position(conn) - wal
    return {"rows": deleted, "seconds": seconds, "longest_statement": max(statements), "statements": len(statements), "wal_bytes": written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    args = parser.parse_args()
    name = f"audit_retention_bench_{os.getpid()}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = _url(name)
    try:
        load(url, args.rows, args.days)
        days = [FIRST + dt.timedelta(days=i) for i in range(args.days)]
        with tempfile.TemporaryDirectory() as folder:
            store = ObjectStore(folder)
            with PostgresSource(url) as source:
                for day in days:
                    export_day(source, store, day, ExportSettings())
            base = baseline(url, days[-1] + dt.timedelta(days=1))
            mine = ours(url, store, days, args.batch_rows)
        assert base["rows"] == mine["rows"] == args.rows, (base, mine)
        print(f"{args.rows:,} rows over {args.days} days, {args.batch_rows:,} ids per statement")
        print(f"{'':<24}{'baseline (1 DELETE)':>22}{'ours (batched by id)':>24}{'ours/baseline':>16}")
        for key, unit in (("seconds", "s"), ("longest_statement", "s"), ("statements", ""), ("wal_bytes", "B")):
            ratio = mine[key] / base[key] if base[key] else float("nan")
            print(f"{key:<24}{base[key]:>20,.3f}{unit:<2}{mine[key]:>22,.3f}{unit:<2}{ratio:>16.3f}")
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
