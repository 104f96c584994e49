"""A forwarder killed with SIGKILL in the middle of a batch, then restarted: nothing lost, nothing duplicated."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from audit_pipeline.forwarding.positions import PositionStore
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.forwarding.conftest import write_config
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

COMMAND = str(Path(sys.executable).parent / "audit-pipeline")


def _run(config: Path, *args: str, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_") or k.startswith("AUDIT_TEST_")}
    env["AUDIT_CONFIG"] = str(config)
    return subprocess.Popen([COMMAND, "forward", "elasticsearch", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _settled(es: ElasticsearchStandIn) -> None:
    """Wait until the stand-in has finished every bulk request it received (the dead forwarder's too)."""
    deadline = time.monotonic() + 30
    while sum(1 for r in es.requests if r[1].endswith("_bulk")) < es.bulk_requests:
        assert time.monotonic() < deadline, "the stand-in never finished its bulk requests"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("concurrency", [1, 4])
def test_sigkill_mid_pass_then_restart_delivers_everything_once(pg: PgDatabase, workdir: Path, es: ElasticsearchStandIn, concurrency: int) -> None:
    """With ``concurrency`` bulk requests in flight, a SIGKILL loses nothing and indexes nothing twice."""
    events = list(generate_events(dt.date(2024, 1, 15), 3_000))
    pg.insert(events)
    config = write_config(
        workdir / "audit_pipeline.yaml",
        database_url=pg.url,
        es_url=es.url,
        export_url=str(workdir / "exports"),
        state_url=f"sqlite:///{workdir}/state.db",
        forwarding={"lease_seconds": 2},
        elasticsearch={"batch_events": 200, "concurrency": concurrency},
    )
    in_flight = threading.Event()
    es.bulk_delay = 0.3

    def on_bulk(number: int) -> None:
        if number == 6:
            in_flight.set()

    es.on_bulk = on_bulk
    follower = _run(config)  # following mode, as a long-running forwarder would be
    assert in_flight.wait(60), follower.communicate(timeout=5)
    follower.send_signal(signal.SIGKILL)  # while the 6th bulk request is being applied
    follower.wait(10)
    assert follower.returncode == -signal.SIGKILL
    _settled(es)
    before = PositionStore(f"sqlite:///{workdir}/state.db").get("elasticsearch")
    committed = before.delivered if before is not None else 0
    # Only batches acknowledged in order were committed: the 6th was in flight, and up to
    # ``concurrency - 1`` before it may have been too.
    assert committed % 200 == 0 and (5 - (concurrency - 1)) * 200 <= committed <= 5 * 200
    applied_uncommitted = len(es.documents()) - committed

    es.bulk_delay = 0.0
    es.on_bulk = None
    restarted = _run(config, "--once")
    out, err = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, err
    assert f"{3_000 - committed:,} events to forward" in err  # resumed at the committed position, not from the start
    indexed = es.documents()
    assert set(indexed) == {e["id"] for e in events}  # 0 lost
    assert not es.duplicates()  # 0 duplicated
    assert es.conflicts == applied_uncommitted  # the batches in flight were sent again and answered 409
    after = PositionStore(f"sqlite:///{workdir}/state.db").get("elasticsearch")
    last = max(events, key=lambda e: (e["created_at"], e["id"]))
    assert after.position.id == last["id"] and after.delivered == 3_000
    assert f"{3_000 - committed:,} delivered, 0 dead-lettered" in out
