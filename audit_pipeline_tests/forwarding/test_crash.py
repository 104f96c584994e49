"""A forwarder killed with SIGKILL in the middle of a batch, then restarted: nothing lost, nothing duplicated."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

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


def test_sigkill_mid_batch_then_restart_delivers_everything_once(pg: PgDatabase, workdir: Path, es: ElasticsearchStandIn) -> None:
    events = list(generate_events(dt.date(2024, 1, 15), 3_000))
    pg.insert(events)
    config = write_config(
        workdir / "audit_pipeline.yaml",
        database_url=pg.url,
        es_url=es.url,
        export_url=str(workdir / "exports"),
        state_url=f"sqlite:///{workdir}/state.db",
        forwarding={"lease_seconds": 2},
        elasticsearch={"batch_events": 200},
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
    before = PositionStore(f"sqlite:///{workdir}/state.db").get("elasticsearch")
    assert before is not None and before.delivered == 5 * 200  # the killed batch was not committed

    es.bulk_delay = 0.0
    es.on_bulk = None
    restarted = _run(config, "--once")
    out, err = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, err
    assert "2,000 events to forward" in err  # resumed at the committed position, not from the start
    indexed = es.documents()
    assert set(indexed) == {e["id"] for e in events}
    assert not es.duplicates()
    assert es.conflicts == 200  # the interrupted batch was sent again and answered 409: delivered once
    after = PositionStore(f"sqlite:///{workdir}/state.db").get("elasticsearch")
    last = max(events, key=lambda e: (e["created_at"], e["id"]))
    assert after.position.id == last["id"] and after.delivered == 3_000
    assert "2,000 delivered, 0 dead-lettered" in out
