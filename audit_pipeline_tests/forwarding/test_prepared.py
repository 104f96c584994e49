"""A prepared transaction (``PREPARE TRANSACTION``, committed later with ``COMMIT PREPARED``) reaches every sink once.

A prepared transaction leaves ``pg_stat_activity`` while it waits, so only ``pg_prepared_xacts``
tells the horizon to hold back.  PostgreSQL allows prepared transactions only when
``max_prepared_transactions`` is above 0; when the test server has 0, the test starts its own
server with it raised (initdb/pg_ctl), and skips, saying why, when it cannot.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline_tests.conftest import ADMIN_URL, DDL, drop_database, free_port, make_database
from audit_pipeline_tests.sinks.events import recent
from audit_pipeline_tests.standins.datadog import DatadogIntake
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn
from audit_pipeline_tests.standins.splunk import SplunkHec
from audit_pipeline_tests.standins.webhook import WebhookReceiver

PG_BIN = Path(os.environ.get("AUDIT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SECRETS = {"DD_API_KEY": "dd-prepared-key-7c1e", "SPLUNK_HEC_TOKEN": "9a8b7c6d-0000-4000-8000-123456789abc", "WEBHOOK_SECRET": "prepared-hook-secret-55"}


def _as_postgres_user(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres account then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="module")
def prepared_url() -> Iterator[str]:
    """A database whose server allows prepared transactions: the test server's, or a private one."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        allowed = int(admin.execute("SHOW max_prepared_transactions").fetchone()[0])  # type: ignore[index]
    if allowed > 0:
        db = make_database("audit_prepared")
        yield db.url
        drop_database(db)
        return
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"max_prepared_transactions is 0 on the test server and {PG_BIN}/initdb is missing to start one with it raised")
    data = Path(tempfile.mkdtemp(prefix="audit-prepared-pg-"))
    port = free_port()
    started = False
    try:
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        subprocess.run(_as_postgres_user([str(PG_BIN / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"]), check=True, capture_output=True)
        options = f"-p {port} -c listen_addresses=127.0.0.1 -c max_prepared_transactions=4 -k {data}"
        subprocess.run(
            _as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "-o", options, "-l", str(data / "log"), "-w", "start"]),
            check=True,
            capture_output=True,
        )
        started = True
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(DDL)
    except (subprocess.CalledProcessError, OSError, LookupError, psycopg.Error) as exc:
        detail = exc.stderr.decode(errors="replace").strip().splitlines()[-1:] if isinstance(exc, subprocess.CalledProcessError) and exc.stderr else [str(exc)]
        if started:
            subprocess.run(_as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
        pytest.skip(f"max_prepared_transactions is 0 on the test server and a private server with it raised could not start: {detail}")
    try:
        yield url
    finally:
        subprocess.run(_as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def _insert(url: str, event_id: str, conn: psycopg.Connection | None = None) -> None:
    sql = "INSERT INTO audit_logs (id, type, result, actor_email) VALUES (%s, 'user.login', 'success', 'prepared@example.com')"
    if conn is not None:
        conn.execute(sql, (event_id,))
        return
    with psycopg.connect(url, autocommit=True) as own:
        own.execute(sql, (event_id,))


@pytest.mark.slow
def test_a_prepared_transaction_committed_after_a_pass_reaches_every_sink_exactly_once(prepared_url, workdir, monkeypatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    with psycopg.connect(prepared_url, autocommit=True) as conn:
        conn.execute("TRUNCATE audit_logs")
    base = recent(20, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    with psycopg.connect(prepared_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO audit_logs (id, type, result, created_at) VALUES (%s, %s, 'success', %s)", [(e["id"], e["type"], e["created_at"]) for e in base]
        )
    with (
        ElasticsearchStandIn() as es,
        DatadogIntake(api_key=SECRETS["DD_API_KEY"]) as datadog,
        SplunkHec(token=SECRETS["SPLUNK_HEC_TOKEN"]) as splunk,
        WebhookReceiver(secret=SECRETS["WEBHOOK_SECRET"]) as hook,
    ):
        config = {
            "source": {"database_url": prepared_url},
            "export": {"url": str(workdir / "exports")},
            "state_url": f"sqlite:///{workdir}/state.db",
            "forwarding": {"lease_seconds": 5, "retry": {"initial_seconds": 0.05, "max_seconds": 0.5, "give_up_seconds": 20}},
            "sinks": {
                "elasticsearch": {"url": es.url, "start": "earliest"},
                "datadog": {"api_key": "${DD_API_KEY}", "url": datadog.intake_url, "start": "earliest"},
                "splunk": {"hec_url": splunk.url, "hec_token": "${SPLUNK_HEC_TOKEN}", "start": "earliest"},
                "webhooks": [{"name": "SIEM", "url": hook.endpoint, "secret": "${WEBHOOK_SECRET}", "start": "earliest"}],
            },
        }
        path = workdir / "audit_pipeline.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        sinks = ["elasticsearch", "datadog", "splunk", "webhook:SIEM"]

        def forward_all() -> None:
            for sink in sinks:
                result = CliRunner().invoke(main, ["--config", str(path), "forward", sink, "--once"], catch_exceptions=False)
                assert result.exit_code == 0, result.output

        def received() -> dict[str, Counter[str]]:
            return {
                "elasticsearch": Counter({i: es.creates.get((index, i), 0) for i, index in es.documents().items()}),
                "datadog": Counter(log["id"] for log in datadog.logs),
                "splunk": Counter(e["event"]["id"] for e in splunk.events),
                "webhook:SIEM": Counter(e["id"] for e in hook.events),
            }

        gid = f"audit_pipeline_test_{uuid.uuid4().hex}"  # a server-wide name: unique, so parallel runs never meet
        writer = psycopg.connect(prepared_url)
        try:
            _insert(prepared_url, "alog_prepared", writer)
            writer.execute(f"PREPARE TRANSACTION '{gid}'")
            time.sleep(1.2)  # its row is now older than the settle lag; the transaction is only prepared
            _insert(prepared_url, "alog_after_prepare")
            time.sleep(1.2)
            forward_all()
            first = received()
            for sink, counts in first.items():
                assert set(counts) == {e["id"] for e in base}, sink  # held back behind the prepared transaction
            with psycopg.connect(prepared_url, autocommit=True) as conn:
                conn.execute(f"COMMIT PREPARED '{gid}'")
            forward_all()
            forward_all()  # and once more: nothing is sent twice
        finally:
            with psycopg.connect(prepared_url, autocommit=True) as conn:
                if conn.execute("SELECT 1 FROM pg_prepared_xacts WHERE gid = %s", (gid,)).fetchone():
                    conn.execute(f"ROLLBACK PREPARED '{gid}'")
            writer.close()
        expected = {e["id"] for e in base} | {"alog_prepared", "alog_after_prepare"}
        for sink, counts in received().items():
            assert set(counts) == expected, sink
            assert max(counts.values()) == 1, sink
        assert len(hook.deliveries) == len(expected)  # the webhook got each event in one delivery
        assert not es.duplicates()
