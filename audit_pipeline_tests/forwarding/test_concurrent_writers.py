"""Eight writers, shared timestamps and late commits, while the forwarder runs: every event indexed exactly once."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from audit_pipeline.sinks.elasticsearch import ElasticsearchSink
from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.forwarding.conftest import make_forwarder
from audit_pipeline_tests.helpers import wait_until
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

UTC = dt.UTC
WRITERS = 8
RUN_SECONDS = 5.0
JOIN_SECONDS = 120  # a writer's last transaction or a forwarding pass that takes longer than this is stuck


def _writer(url: str, number: int, stop: threading.Event, written: list[int]) -> None:
    """HelloJohn-like transactions: created_at defaults to now() (the transaction's start).

    Some transactions write hundreds of events (all sharing one created_at), some stay open
    for seconds after writing and so commit after transactions that started later, and some
    take their timestamp from the application clock just before they begin.
    """
    rng = random.Random(number)
    count = 0
    with psycopg.connect(url) as conn:
        while not stop.is_set():
            roll = rng.random()
            size = 300 if roll < 0.04 else rng.randint(1, 40)
            app_clock = dt.datetime.now(UTC) if 0.04 <= roll < 0.12 else None
            with conn.transaction(), conn.cursor() as cur:
                rows = [(f"w{number}-{count + i:06d}", rng.choice(["user.login", "org.member_added", "token.refreshed"])) for i in range(size)]
                if app_clock is None:
                    cur.executemany("INSERT INTO audit_logs (id, type, result) VALUES (%s, %s, 'success')", rows)
                else:
                    cur.executemany("INSERT INTO audit_logs (id, type, result, created_at) VALUES (%s, %s, 'success', %s)", [(*r, app_clock) for r in rows])
                if rng.random() < 0.15:
                    time.sleep(rng.uniform(0.5, 3.0))  # commits seconds after later transactions
            count += size
            time.sleep(rng.uniform(0, 0.02))
    written[number] = count


@pytest.mark.slow
def test_every_event_written_concurrently_is_indexed_exactly_once(pg: PgDatabase, tmp_path, es: ElasticsearchStandIn) -> None:
    sink = ElasticsearchSink.from_config({"url": es.url, "batch_events": 250})
    forwarder = make_forwarder(pg.url, sink, tmp_path, read_events=1_000)
    stop_writers, stop_forwarder = threading.Event(), threading.Event()
    written = [0] * WRITERS
    passes: list[int] = []

    def forward_loop() -> None:
        with forwarder.leased():
            while not stop_forwarder.is_set():
                result = forwarder.run_pass()
                assert result.complete, result.stopped
                passes.append(result.delivered)
                time.sleep(0.2)

    # Threads run as futures: an assertion or error inside one is raised again here by result(), so it
    # fails the test (a plain Thread would only print it), and every wait has a deadline.
    with ThreadPoolExecutor(max_workers=WRITERS + 1) as pool:
        try:
            loop = pool.submit(forward_loop)
            writers = [pool.submit(_writer, pg.url, n, stop_writers, written) for n in range(WRITERS)]
            time.sleep(RUN_SECONDS)
            # the forwarder must have delivered while the writers wrote; on a loaded machine that takes longer
            wait_until(lambda: sum(1 for p in passes if p) >= 3 or loop.done(), "three delivering passes during the writes", timeout=JOIN_SECONDS)
            stop_writers.set()
            for w in writers:
                w.result(timeout=JOIN_SECONDS)
            time.sleep(1.5)  # let the last commits settle, then one more pass
            stop_forwarder.set()
            loop.result(timeout=JOIN_SECONDS)
        finally:  # a failure here must not leave the threads running (the pool would wait for them forever)
            stop_writers.set()
            stop_forwarder.set()
    with forwarder.leased():
        passes.append(forwarder.run_pass().delivered)

    source = {r[0]: r[1] for r in pg.fetch("SELECT id, created_at FROM audit_logs")}
    assert len(source) == sum(written) >= 2_000
    shared = pg.fetch("SELECT max(n) FROM (SELECT count(*) AS n FROM audit_logs GROUP BY created_at) t")[0][0]
    assert shared >= 300  # hundreds share one created_at
    indexed = es.documents()
    assert set(indexed) == set(source)
    assert not es.duplicates() and sum(es.creates.values()) == len(source)
    for event_id, created_at in source.items():
        assert indexed[event_id] == f"hellojohn-audit-{created_at.astimezone(UTC):%Y.%m.%d}"
