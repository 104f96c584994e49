"""The forwarding engine, unchanged, on the HelloJohn API source: each event delivered once, in order,
through 429s, a 500, repeated events and reads resumed from the sink's position."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from audit_pipeline.config.sections.forwarding import ForwardingSettings, SinkForwarding
from audit_pipeline.forwarding.deadletters import DeadLetterStore
from audit_pipeline.forwarding.engine import Forwarder
from audit_pipeline.forwarding.positions import PositionStore
from audit_pipeline.sources.hellojohn_api import HelloJohnApiSource
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.forwarding.conftest import RecordingSink
from audit_pipeline_tests.standins.hellojohn_api import DEFAULT_KEY, serve_hellojohn_api


def test_forwarding_from_the_api_delivers_every_event_once_in_order(pg, tmp_path: Path):
    now = dt.datetime.now(dt.UTC)
    events = [
        {"id": f"alog_{n:05d}", "type": "user.login", "tenant_id": f"ten_{n % 3}", "created_at": now - dt.timedelta(minutes=50) + dt.timedelta(seconds=n // 3)}
        for n in range(700)
    ]
    pg.insert(events)
    expected = sorted((e["created_at"], e["id"]) for e in events)
    sink = RecordingSink(max_batch_events=90)
    settings = ForwardingSettings.model_validate({"settle_seconds": 1, "read_events": 160, "retry": {"initial_seconds": 0.01, "max_seconds": 0.05}})
    with serve_hellojohn_api(pg.url, rate_limit_every=5, retry_after=0, fail_at={4}, repeat_overlap=3) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, page_size=100, sleep=lambda s: None)
        positions = PositionStore(f"sqlite:///{tmp_path}/state.db")
        forwarder = Forwarder(sink, source, positions, DeadLetterStore(ObjectStore(str(tmp_path / "exports"))), settings, SinkForwarding(start="earliest"))
        with forwarder.leased():
            first = forwarder.run_pass()
        assert first.complete, first.stopped
        later = [{"id": "alog_late", "type": "user.logout", "created_at": now - dt.timedelta(seconds=30)}]
        pg.insert(later)
        with forwarder.leased():
            second = forwarder.run_pass()
    assert second.complete, second.stopped
    assert sink.received == [i for _, i in expected] + ["alog_late"]
    assert max(sink.delivered.values()) == 1 and first.delivered == 700 and second.delivered == 1
    assert {r.status for r in api.requests} >= {200, 429, 500}
