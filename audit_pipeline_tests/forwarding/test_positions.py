"""Positions and leases in the state database, on SQLite (default) and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pyarrow as pa
import pytest

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.forwarding.delivered_counts import CountingStart, events_by_day
from audit_pipeline.forwarding.positions import LeaseLost, PositionConflict, PositionStore
from audit_pipeline.forwarding.state_tables import counting_table
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


class HandClock:
    """Seconds since the epoch, moved only by :meth:`advance`: a lease expires when the test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture(params=["sqlite", "postgresql"])
def clocked_store(request, tmp_path, pg_session_db: PgDatabase, clock: HandClock):
    """A store whose lease times come from ``clock`` (on PostgreSQL too, instead of the database's)."""
    url = f"sqlite:///{tmp_path}/state.db" if request.param == "sqlite" else pg_session_db.url
    positions = PositionStore(url, clock=clock)
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


def test_a_forwarder_that_lost_its_lease_cannot_move_the_position(clocked_store: PositionStore, clock: HandClock) -> None:
    store = clocked_store
    sink = _sink()
    store.initialise(sink, None)
    assert store.acquire(sink, "old", 0.3) is None
    clock.advance(0.29)  # however slow the machine, the lease has not expired yet
    other = store.acquire(sink, "new", 30)
    assert other is not None and other.holder == "old"
    clock.advance(0.02)
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
    barrier = threading.Barrier(8, timeout=60)

    def contend(name: str) -> None:
        barrier.wait()
        if store.acquire(sink, name, 30) is None:
            winners.append(name)

    threads = [threading.Thread(target=contend, args=(f"f{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a contender is stuck"
    assert len(winners) == 1
    assert store.lease(sink).holder == winners[0]


def test_a_bad_state_url_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="state_url is not a valid SQLAlchemy URL"):
        PositionStore("not a url")


def test_delivered_counts_per_day_move_with_the_position_only(store: PositionStore) -> None:
    sink = _sink()
    day, next_day = T0.date(), T0.date() + dt.timedelta(days=1)
    store.initialise(sink, None)
    assert store.counting_since(sink) == CountingStart(None, True)
    store.acquire(sink, "me", 30)
    store.advance(sink, "me", Position(T0, "a"), delivered=3, dead_lettered=0, lease_seconds=30, per_day={day: 3})
    store.advance(sink, "me", Position(T0, "b"), delivered=4, dead_lettered=1, lease_seconds=30, per_day={day: 1, next_day: 3})
    assert (store.delivered_count(sink, day), store.delivered_count(sink, next_day)) == (4, 3)
    # A refused advance (fenced by the lease) adds nothing.
    store.acquire(sink, "thief", 0)
    with pytest.raises(LeaseLost):
        store.advance(sink, "thief", Position(T0, "c"), delivered=9, dead_lettered=0, lease_seconds=30, per_day={day: 9})
    with pytest.raises(PositionConflict):
        store.advance(sink, "me", Position(T0, "a"), delivered=9, dead_lettered=0, lease_seconds=30, per_day={day: 9})
    assert store.delivered_count(sink, day) == 4
    store.replayed(sink, 1, {next_day: 1})
    assert store.delivered_count(sink, next_day) == 4
    assert store.delivered_count(_sink(), day) == 0


def test_a_sink_from_before_per_day_counts_starts_counting_at_its_position(store: PositionStore) -> None:
    sink = _sink()
    store.initialise(sink, Position(T0, "x"))
    with store.engine.begin() as conn:  # as a state database written by an older version
        conn.execute(counting_table.delete().where(counting_table.c.sink == sink))
    assert store.counting_since(sink) is None
    store.acquire(sink, "me", 30)
    store.advance(sink, "me", Position(T0, "y"), delivered=1, dead_lettered=0, lease_seconds=30, per_day={T0.date(): 1})
    assert store.counting_since(sink) == CountingStart(Position(T0, "x"), False)


def test_events_by_day_counts_utc_days_leaving_out_rejected_rows() -> None:
    times = [dt.datetime(2024, 1, 1, 23, 59, 59, 999999, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC), dt.datetime(2024, 1, 2, 5, tzinfo=UTC)]
    batch = pa.RecordBatch.from_arrays([pa.array(times, pa.timestamp("us", "UTC"))], names=["created_at"])
    assert events_by_day(batch) == {dt.date(2024, 1, 1): 1, dt.date(2024, 1, 2): 2}
    assert events_by_day(batch, [1]) == {dt.date(2024, 1, 1): 1, dt.date(2024, 1, 2): 1}
    assert events_by_day(batch, [0, 1, 2]) == {}
