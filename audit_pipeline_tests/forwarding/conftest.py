"""Fixtures for forwarding tests: the Elasticsearch stand-in, a recording sink, forwarders on the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from audit_pipeline.config.sections.forwarding import ForwardingSettings, SinkForwarding
from audit_pipeline.forwarding.deadletters import DeadLetterStore
from audit_pipeline.forwarding.engine import Forwarder
from audit_pipeline.forwarding.positions import PositionStore
from audit_pipeline.sinks.base import DeliveryReport, EventBatch, Outcome, Sink
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

UTC = dt.UTC


@pytest.fixture
def es() -> Iterator[ElasticsearchStandIn]:
    with ElasticsearchStandIn() as standin:
        yield standin


class RecordingSink(Sink):
    """A sink that keeps what it was sent; ``policy(event_id, attempt)`` may answer something else than delivered."""

    def __init__(self, name: str = "recorder", max_batch_events: int = 1_000, policy: Callable[[str, int], Outcome] | None = None) -> None:
        self.name = name
        self.max_batch_events = max_batch_events
        self.policy = policy
        self.received: list[str] = []
        self.delivered: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.batches: list[int] = []
        self.prepared = 0

    def prepare(self) -> None:
        self.prepared += 1

    def send(self, events: EventBatch) -> DeliveryReport:
        self.batches.append(len(events))
        outcomes = []
        for event_id in events.ids:
            self.attempts[event_id] += 1
            outcome = self.policy(event_id, self.attempts[event_id]) if self.policy else Outcome.DELIVERED
            if outcome is Outcome.DELIVERED:
                self.delivered[event_id] += 1
                self.received.append(event_id)
            outcomes.append(outcome)
        reasons = {i: f"policy said {o.value}" for i, o in enumerate(outcomes) if o is not Outcome.DELIVERED}
        return DeliveryReport(outcomes, reasons)


class FakeClock:
    """Monotonic time that moves only when the engine sleeps (no real waiting in retry tests)."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_forwarder(
    database_url: str,
    sink: Sink,
    tmp_path: Path,
    *,
    start: Any = "earliest",
    state_url: str | None = None,
    clock: FakeClock | None = None,
    log: Callable[[str], None] | None = None,
    **settings: Any,
) -> Forwarder:
    options: dict[str, Any] = {"retry": {"initial_seconds": 0.01, "max_seconds": 0.05, "give_up_seconds": 30}}
    options.update(settings)
    fwd = ForwardingSettings.model_validate(options)
    positions = PositionStore(state_url or f"sqlite:///{tmp_path}/state.db")
    dead_letters = DeadLetterStore(ObjectStore(str(tmp_path / "exports")))
    extra: dict[str, Any] = {}
    if clock is not None:
        extra = {"clock": clock, "sleep": clock.sleep}
    return Forwarder(sink, PostgresSource(database_url), positions, dead_letters, fwd, SinkForwarding(start=start), log=log, **extra)


def write_config(
    path: Path,
    *,
    database_url: str,
    es_url: str,
    export_url: str,
    state_url: str | None = None,
    forwarding: dict[str, Any] | None = None,
    elasticsearch: dict[str, Any] | None = None,
) -> Path:
    config: dict[str, Any] = {
        "source": {"database_url": database_url},
        "export": {"url": export_url},
        "forwarding": {
            "lease_seconds": 5,
            "retry": {"initial_seconds": 0.05, "max_seconds": 0.5, "give_up_seconds": 20},
            **(forwarding or {}),
        },
        "sinks": {"elasticsearch": {"url": es_url, "start": "earliest", **(elasticsearch or {})}},
    }
    if state_url:
        config["state_url"] = state_url
    path.write_text(yaml.safe_dump(config))
    return path
