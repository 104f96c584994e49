"""Shared fixtures: a real PostgreSQL database per test session, and S3 through moto's server over HTTP.

PostgreSQL: ``AUDIT_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
must reach a server where we may create databases and roles; ``.ci/run`` starts one when
none runs.  Each session works in its own database, so parallel runs do not collide.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

ADMIN_URL = os.environ.get("AUDIT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DDL = (Path(__file__).parent / "fixtures" / "audit_logs.sql").read_text()
UTC = dt.UTC


def _with_db(url: str, dbname: str, user: str | None = None) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(database=dbname)
    if user is not None:
        parsed = parsed.set(username=user, password=None)
    return parsed.render_as_string(hide_password=False)


@dataclass
class PgDatabase:
    """A scratch database holding HelloJohn's audit_logs table."""

    name: str
    url: str  # owner (superuser) URL
    readonly_url: str  # a role with SELECT only, as the exporter should run

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True)

    def reset(self) -> None:
        with self.connect() as conn:
            conn.execute("TRUNCATE audit_logs")

    def insert(self, events: Iterable[dict[str, Any]]) -> int:
        """Insert events (dicts with any subset of the columns; metadata as object or JSON text)."""
        rows = 0
        with (
            self.connect() as conn,
            conn.cursor() as cur,
            cur.copy(
                "COPY audit_logs (id, type, actor_id, actor_email, actor_type, resource_id, resource_type, tenant_id,"
                " organization_id, ip_address, country, result, created_at, metadata) FROM STDIN"
            ) as copy,
        ):
            for e in events:
                metadata = e.get("metadata", {})
                copy.write_row(
                    (
                        e["id"],
                        e.get("type", "user.login"),
                        e.get("actor_id"),
                        e.get("actor_email"),
                        e.get("actor_type"),
                        e.get("resource_id"),
                        e.get("resource_type"),
                        e.get("tenant_id"),
                        e.get("organization_id"),
                        e.get("ip_address"),
                        e.get("country"),
                        e.get("result", "success"),
                        e["created_at"],
                        metadata if isinstance(metadata, str) else json.dumps(metadata),
                    )
                )
                rows += 1
        return rows

    def fetch(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(query, params or None).fetchall()


def make_database(prefix: str = "audit_test") -> PgDatabase:
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    reader = f"{name}_ro"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.exit(f"PostgreSQL is not reachable at {ADMIN_URL} ({exc}); start it (bash .ci/run does) or set AUDIT_TEST_PG_URL", returncode=3)
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(reader)))
    url = _with_db(ADMIN_URL, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(DDL)
        conn.execute(sql.SQL("GRANT SELECT ON audit_logs TO {}").format(sql.Identifier(reader)))
    return PgDatabase(name=name, url=url, readonly_url=_with_db(ADMIN_URL, name, reader))


def drop_database(db: PgDatabase) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db.name)))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(db.name + "_ro")))


@pytest.fixture(scope="session")
def pg_session_db() -> Iterator[PgDatabase]:
    db = make_database()
    yield db
    drop_database(db)


@pytest.fixture
def pg(pg_session_db: PgDatabase) -> PgDatabase:
    """The session database, emptied for this test."""
    pg_session_db.reset()
    return pg_session_db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    endpoint_url: str

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def new_bucket(self) -> str:
        name = f"audit-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto in server mode: real HTTP, real s3fs and botocore code paths."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield S3Server(f"http://127.0.0.1:{port}")
    server.stop()


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Each test starts with no registered secrets: one test's configuration must not mask another's text."""
    from audit_pipeline.core.redaction import forget_secrets

    forget_secrets()
    yield
    forget_secrets()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temporary directory with no AUDIT_* variables inherited from the caller."""
    for name in list(os.environ):
        if name.startswith("AUDIT_") and name != "AUDIT_TEST_PG_URL" and not name.startswith("AUDIT_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


CHECKOUT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
#: Caches and source files: Python and tools write the caches, and other engineers may add .py/.md files while tests run.
_NOT_LEFT_BY_TESTS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
_SOURCE_SUFFIXES = (".py", ".md")


def _checkout_entries() -> set[str]:
    """The checkout's top level, the default state folder (``.audit_pipeline/``, where a source-less configuration
    keeps the demo database and the state) and everything under ``audit_pipeline_tests/``, without caches and sources."""
    entries = {p.name for p in CHECKOUT.iterdir() if p.name not in _NOT_LEFT_BY_TESTS and not (p.is_file() and p.name.endswith(_SOURCE_SUFFIXES))}
    state = CHECKOUT / ".audit_pipeline"
    if state.is_dir():
        entries |= {f".audit_pipeline/{p.name}" for p in state.iterdir()}
    for folder, dirs, files in os.walk(TESTS):
        dirs[:] = [d for d in dirs if d not in _NOT_LEFT_BY_TESTS]
        relative = Path(folder).relative_to(CHECKOUT)
        if not any(f.endswith(_SOURCE_SUFFIXES) for f in files):
            entries.add(f"{relative}/")  # a folder that is no test package
        entries |= {f"{relative}/{f}" for f in files if not f.endswith(_SOURCE_SUFFIXES)}
    return entries


@pytest.fixture(autouse=True)
def _leaves_nothing_in_the_checkout() -> Iterator[None]:
    """Fails a test that leaves a new file or folder in the checkout: tests write under ``tmp_path`` (``workdir``)."""
    before = _checkout_entries()
    yield
    left = sorted(_checkout_entries() - before)
    if left:
        pytest.fail(f"the test left {', '.join(left)} in the checkout; write under tmp_path (or run in workdir) instead", pytrace=False)


# Fixtures that reach the PostgreSQL server; a test depending on any of them, directly or through
# another fixture, is marked `pg`, so `pytest -m "not pg"` runs what needs no server.
POSTGRES_FIXTURES = frozenset({"pg_session_db", "dagster_db"})


def _start_rank(item: pytest.Item) -> int:
    """0 for a test that declares a longer time limit than the suite's (minutes of work), 1 for the rest of the slow
    ones, 2 for the others."""
    limit = item.get_closest_marker("timeout")
    if limit is not None and limit.args and float(limit.args[0]) > float(item.config.getini("timeout") or 0):
        return 0
    return 1 if item.get_closest_marker("slow") is not None else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.pg)
    # The longest tests first, one pile per pytest-xdist worker: `--dist worksteal` gives each worker a contiguous
    # share of this order, so dealing the tests out longest first, round robin, starts every worker on one of the
    # longest instead of one worker queueing them all; idle workers then steal from the longest queue.  The sort is
    # stable and every pile keeps its files' order, and every worker computes the same order, as xdist requires.
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    ordered = sorted(items, key=_start_rank)
    items[:] = [item for pile in range(workers) for item in ordered[pile::workers]]
