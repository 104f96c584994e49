"""Positions and leases in the state database, on SQLite (default) and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pytest

from audit_pipeline.errors import ConfigError
from audit_pipeline.forwarding.positions import LeaseLost, PositionConflict, PositionStore
from audit_pipeline.sources.base import Position
from audit_pipeline_tests.conftest import PgDatabase

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 15, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, pg_session_db: PgDatabase):
    url = f"sqlite:///{tmp_path}/state.db" if request.param == "sqlite" else pg_session_db.url
    positions = PositionStore(url)
    yield positions
    positions.close()


def _sink() -> str:
    return f"sink-{uuid.uuid4().hex[:8]}"


def test_positions_keep_microseconds_and_ids_exactly(store: PositionStore) -> None:
    sink = _sink()
    assert store.get(sink) is None
    state = store.initialise(sink, None)
    assert state.position is None
    store.acquire(sink, "me", 30)
    store.advance(sink, "me", Position(T0, "é-ünïcode"), delivered=5, dead_lettered=2, lease_seconds=30)
    state = store.get(sink)
    assert state.position == Position(T0, "é-ünïcode")
    assert (state.delivered, state.dead_lettered, state.dead_letters_pending) == (5, 2, 2)
    store.replayed(sink, 2)
    assert store.get(sink).dead_letters_pending == 0
    assert sink in {s.sink for s in store.all()}


def test_initialise_keeps_an_existing_position(store: PositionStore) -> None:
    sink = _sink()
    store.initialise(sink, Position(T0, ""))
    assert store.initialise(sink, None).position == Position(T0, "")


def test_a_position_never_moves_back(store: PositionStore) -> None:
    sink = _sink()
    store.initialise(sink, Position(T0, "b"))
    store.acquire(sink, "me", 30)
    with pytest.raises(PositionConflict, match="refusing to move"):
        store.advance(sink, "me", Position(T0, "a"), delivered=1, dead_lettered=0, lease_seconds=30)
    with pytest.raises(PositionConflict):
        store.advance(sink, "me", Position(T0, "b"), delivered=1, dead_lettered=0, lease_seconds=30)
    assert store.get(sink).position == Position(T0, "b")


def test_a_forwarder_that_lost_its_lease_cannot_move_the_position(store: PositionStore) -> None:
    sink = _sink()
    store.initialise(sink, None)
    assert store.acquire(sink, "old", 0.3) is None
    other = store.acquire(sink, "new", 30)
    assert other is not None and other.holder == "old"
    time.sleep(0.4)
    assert store.acquire(sink, "new", 30) is None  # the old lease expired: taken over
    with pytest.raises(LeaseLost, match="stopping without moving its position"):
        store.advance(sink, "old", Position(T0, "x"), delivered=1, dead_lettered=0, lease_seconds=30)
    assert store.get(sink).position is None
    store.advance(sink, "new", Position(T0, "x"), delivered=1, dead_lettered=0, lease_seconds=30)
    store.release(sink, "new")
    assert store.lease(sink) is None


def test_exactly_one_of_many_concurrent_forwarders_gets_the_lease(store: PositionStore) -> None:
    sink = _sink()
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def contend(name: str) -> None:
        barrier.wait()
        if store.acquire(sink, name, 30) is None:
            winners.append(name)

    threads = [threading.Thread(target=contend, args=(f"f{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert store.lease(sink).holder == winners[0]


def test_a_bad_state_url_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="state_url is not a valid SQLAlchemy URL"):
        PositionStore("not a url")
