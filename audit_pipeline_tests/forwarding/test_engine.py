"""The forwarding engine against the real PostgreSQL, with a recording sink."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from audit_pipeline.core.errors import StorageError
from audit_pipeline.forwarding.errors import SinkBusy
from audit_pipeline.sinks.base import DeliveryReport, EventBatch, Outcome, SinkFailure
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.forwarding.conftest import FakeClock, RecordingSink, make_forwarder

UTC = dt.UTC
DAY = dt.date(2024, 1, 15)


def _events(count: int, day: dt.date = DAY, seed: int = 7) -> list[dict]:
    return list(generate_events(day, count, seed=seed))


def _source_order(pg: PgDatabase) -> list[str]:
    return [r[0] for r in pg.fetch('SELECT id FROM audit_logs ORDER BY created_at, id COLLATE "C"')]


def _crash_on_second_advance(monkeypatch, forwarder) -> None:
    """The process dies after the sink acknowledged the second batch, before its commit."""
    real_advance = forwarder.positions.advance
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_advance(*args, **kwargs)

    monkeypatch.setattr(forwarder.positions, "advance", crash_on_second)


def test_events_sharing_a_timestamp_are_each_delivered_once_across_small_batches(pg: PgDatabase, tmp_path) -> None:
    events = _events(600)
    tie = dt.datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
    # 300 events share one created_at, with ids whose bytewise order differs from a linguistic one.
    for n, event in enumerate(events[:300]):
        event["created_at"] = tie
        event["id"] = f"{['A', 'a', 'Z', 'é', '_'][n % 5]}log_{n:04d}"
    pg.insert(events)
    sink = RecordingSink(max_batch_events=7)
    forwarder = make_forwarder(pg.url, sink, tmp_path, read_events=200)
    with forwarder.leased():
        result = forwarder.run_pass()
    assert result.complete, result.stopped
    assert sink.received == _source_order(pg)
    assert max(sink.delivered.values()) == 1
    assert result.delivered == 600
    assert forwarder.positions.get("recorder").position.id == sink.received[-1]
    # a second pass finds nothing new
    with forwarder.leased():
        again = forwarder.run_pass()
    assert again.delivered == 0 and len(sink.received) == 600


def _ahead(forwarder, seconds: float):
    """The database clock moved ``seconds`` ahead: the horizon's clock is injected, so no test sleeps through the settle lag."""
    return lambda: forwarder.source.now() + dt.timedelta(seconds=seconds)


def _late_commit_scenario(pg: PgDatabase, tmp_path, watch: bool) -> tuple[RecordingSink, str, str]:
    """A transaction writes A (created_at = its start) and commits after B, written later, was committed."""
    sink = RecordingSink()
    # The sweep is off: this shows what the horizon alone does.
    forwarder = make_forwarder(pg.url, sink, tmp_path, settle_seconds=0.3, watch_open_transactions=watch, late_window=0)
    forwarder.now = _ahead(forwarder, 1.0)  # every committed row is older than the settle lag, without waiting
    slow = psycopg.connect(pg.url)
    try:
        slow.execute("INSERT INTO audit_logs (id, type, result) VALUES ('late-A', 'user.login', 'success')")
        pg.fetch("INSERT INTO audit_logs (id, type, result) VALUES ('early-B', 'user.login', 'success') RETURNING id")
        with forwarder.leased():  # B is older than the settle lag; A's transaction is still open
            forwarder.run_pass()
        slow.commit()
    finally:
        slow.close()
    with forwarder.leased():
        forwarder.run_pass()
    return sink, "late-A", "early-B"


def test_a_transaction_committing_after_a_later_one_is_still_forwarded(pg: PgDatabase, tmp_path) -> None:
    sink, late, early = _late_commit_scenario(pg, tmp_path, watch=True)
    assert sink.received == [late, early]  # held back until A committed, then in (created_at, id) order


def test_without_watching_open_transactions_the_late_commit_is_lost(pg: PgDatabase, tmp_path) -> None:
    """The control: what the Logstash recipe (and a settle lag shorter than the transaction) loses."""
    sink, late, early = _late_commit_scenario(pg, tmp_path, watch=False)
    assert sink.received == [early]
    assert late not in sink.delivered


def test_a_role_that_cannot_see_other_sessions_is_told_only_the_settle_lag_protects(pg: PgDatabase, tmp_path) -> None:
    pg.insert(_events(3))
    messages: list[str] = []
    forwarder = make_forwarder(pg.readonly_url, RecordingSink(), tmp_path, log=messages.append)
    with forwarder.leased():
        assert forwarder.run_pass().delivered == 3
    assert any("pg_read_all_stats" in m and "settle lag" in m for m in messages)


def test_retryable_events_are_resent_alone_with_backoff_honouring_retry_after(pg: PgDatabase, tmp_path) -> None:
    events = _events(50)
    pg.insert(events)
    flaky = {events[3]["id"], events[40]["id"]}

    class Sink(RecordingSink):
        def send(self, batch: EventBatch) -> DeliveryReport:
            report = super().send(batch)
            if any(o is Outcome.RETRY for o in report.outcomes):
                report.retry_after = 7.0
            return report

    sink = Sink(policy=lambda i, attempt: Outcome.RETRY if i in flaky and attempt <= 2 else Outcome.DELIVERED)
    clock = FakeClock()
    forwarder = make_forwarder(pg.url, sink, tmp_path, clock=clock)
    with forwarder.leased():
        result = forwarder.run_pass()
    assert result.complete and result.delivered == 50
    assert set(sink.delivered.values()) == {1}
    assert sink.batches == [50, 2, 2]  # only the two retryable events were sent again
    assert sum(clock.sleeps) >= 14  # two waits of at least Retry-After


def test_a_batch_that_keeps_failing_stops_the_pass_and_leaves_the_position_before_it(pg: PgDatabase, tmp_path) -> None:
    events = sorted(_events(30), key=lambda e: (e["created_at"], e["id"]))
    pg.insert(events)
    stuck = {events[25]["id"]}
    healthy = {"on": False}
    sink = RecordingSink(max_batch_events=10, policy=lambda i, _a: Outcome.RETRY if i in stuck and not healthy["on"] else Outcome.DELIVERED)
    clock = FakeClock()
    forwarder = make_forwarder(pg.url, sink, tmp_path, clock=clock, retry={"initial_seconds": 1, "max_seconds": 4, "give_up_seconds": 20})
    with forwarder.leased():
        result = forwarder.run_pass()
    assert not result.complete and "still not accepted" in result.stopped and "give_up_seconds" in result.stopped
    assert result.delivered == 20 and result.position == (events[19]["created_at"], events[19]["id"])
    assert forwarder.positions.get("recorder").position.id == events[19]["id"]
    healthy["on"] = True
    with forwarder.leased():
        again = forwarder.run_pass()
    assert again.complete
    assert sink.delivered[events[25]["id"]] == 1
    # the rest of the stuck batch was delivered before and is sent again: at least once, never lost
    assert all(sink.delivered[e["id"]] == 2 for e in events[20:30] if e["id"] not in stuck)
    assert all(sink.delivered[e["id"]] == 1 for e in events[:20])


def test_a_sink_failure_stops_the_pass_with_its_message(pg: PgDatabase, tmp_path) -> None:
    pg.insert(_events(20))

    class Broken(RecordingSink):
        def send(self, batch: EventBatch) -> DeliveryReport:
            if len(self.batches) >= 1:
                raise SinkFailure("credentials refused (401); check sinks.recorder.token")
            return super().send(batch)

    forwarder = make_forwarder(pg.url, Broken(max_batch_events=5), tmp_path)
    with forwarder.leased():
        result = forwarder.run_pass()
    assert result.stopped == "credentials refused (401); check sinks.recorder.token"
    assert result.delivered == 5 and forwarder.positions.get("recorder").delivered == 5


def test_rejected_events_are_dead_lettered_and_do_not_block(pg: PgDatabase, tmp_path) -> None:
    events = _events(40)
    pg.insert(events)
    bad = {events[5]["id"], events[33]["id"]}
    sink = RecordingSink(max_batch_events=20, policy=lambda i, _a: Outcome.REJECTED if i in bad else Outcome.DELIVERED)
    forwarder = make_forwarder(pg.url, sink, tmp_path)
    with forwarder.leased():
        result = forwarder.run_pass()
    assert result.complete and result.delivered == 38 and result.dead_lettered == 2
    state = forwarder.positions.get("recorder")
    assert (state.dead_lettered, state.dead_letters_pending) == (2, 2)
    objects = list(forwarder.dead_letters.iter_objects("recorder"))
    assert sorted(i for o in objects for i in o.events.ids) == sorted(bad)
    assert all(r == "policy said rejected" for o in objects for r in o.reasons)
    # the dead letter holds the event exactly as the NDJSON export prints it
    by_id = {e["id"]: e for e in events}
    for obj in objects:
        for i, event_id in enumerate(obj.events.ids):
            assert obj.events.event(i)["actor_email"] == by_id[event_id]["actor_email"]


def test_the_position_does_not_move_when_dead_letters_cannot_be_written(pg: PgDatabase, tmp_path, monkeypatch) -> None:
    events = _events(10)
    pg.insert(events)
    sink = RecordingSink(policy=lambda i, _a: Outcome.REJECTED if i == events[4]["id"] else Outcome.DELIVERED)
    forwarder = make_forwarder(pg.url, sink, tmp_path)

    def unwritable(*_args, **_kwargs):
        raise StorageError("access denied while publishing s3://bucket/deadletters/... (AUDIT_EXPORT_URL)")

    monkeypatch.setattr(forwarder.dead_letters, "write", unwritable)
    with forwarder.leased():
        result = forwarder.run_pass()
    assert "access denied" in result.stopped
    assert forwarder.positions.get("recorder").position is None


def test_a_crash_between_send_and_commit_resends_that_batch_only(pg: PgDatabase, tmp_path, monkeypatch) -> None:
    events = sorted(_events(30), key=lambda e: (e["created_at"], e["id"]))
    pg.insert(events)
    sink = RecordingSink(max_batch_events=10)
    forwarder = make_forwarder(pg.url, sink, tmp_path)
    _crash_on_second_advance(monkeypatch, forwarder)
    with pytest.raises(KeyboardInterrupt), forwarder.leased():
        forwarder.run_pass()
    assert forwarder.positions.delivered_count("recorder", DAY) == 10  # the uncommitted batch is not counted
    restarted = make_forwarder(pg.url, sink, tmp_path)
    with restarted.leased():
        assert restarted.run_pass().complete
    assert restarted.positions.delivered_count("recorder", DAY) == 30  # sent twice, counted once
    assert {e["id"] for e in events} == set(sink.delivered)
    assert [sink.delivered[e["id"]] for e in events] == [1] * 10 + [2] * 10 + [1] * 10


def test_max_rate_paces_a_catch_up(pg: PgDatabase, tmp_path) -> None:
    pg.insert(_events(3000))
    clock = FakeClock()
    sink = RecordingSink(max_batch_events=500)
    forwarder = make_forwarder(pg.url, sink, tmp_path, clock=clock, max_events_per_second=1000)
    with forwarder.leased():
        assert forwarder.run_pass().delivered == 3000
    assert sum(clock.sleeps) == pytest.approx(3.0, abs=0.01)  # 3,000 events at 1,000/s


def test_batches_respect_the_sinks_byte_limit(pg: PgDatabase, tmp_path) -> None:
    events = _events(60)
    events[10]["metadata"] = {"blob": "x" * 5000}  # one event larger than the limit travels alone
    pg.insert(events)
    sizes: list[tuple[int, int]] = []

    class Small(RecordingSink):
        max_batch_bytes = 2_000

        def send(self, batch: EventBatch) -> DeliveryReport:
            sizes.append((len(batch), int(batch.ndjson()[1][-1])))
            return super().send(batch)

    sink = Small()
    forwarder = make_forwarder(pg.url, sink, tmp_path)
    with forwarder.leased():
        assert forwarder.run_pass().delivered == 60
    assert all(size <= 2_000 or count == 1 for count, size in sizes)
    assert (1, max(s for _, s in sizes)) in sizes and max(s for _, s in sizes) > 5000
    assert sum(c for c, _ in sizes) == 60


def test_events_the_sink_does_not_want_are_passed_over(pg: PgDatabase, tmp_path) -> None:
    events = _events(100)
    pg.insert(events)

    class LoginsOnly(RecordingSink):
        def accepts(self, event_type: str) -> bool:
            return event_type.startswith("user.login")

    sink = LoginsOnly()
    forwarder = make_forwarder(pg.url, sink, tmp_path)
    with forwarder.leased():
        result = forwarder.run_pass()
    wanted = {e["id"] for e in events if e["type"].startswith("user.login")}
    assert set(sink.delivered) == wanted and result.skipped == 100 - len(wanted)
    assert forwarder.positions.get("recorder").position is not None


@pytest.mark.parametrize(
    ("start", "expected_days"),
    [("earliest", {DAY, DAY + dt.timedelta(days=1)}), (DAY + dt.timedelta(days=1), {DAY + dt.timedelta(days=1)}), ("now", set())],
)
def test_a_new_sink_starts_where_its_configuration_says(pg: PgDatabase, tmp_path, start, expected_days) -> None:
    events = _events(20) + _events(20, DAY + dt.timedelta(days=1))
    pg.insert(events)
    sink = RecordingSink()
    forwarder = make_forwarder(pg.url, sink, tmp_path, start=start)
    with forwarder.leased():
        forwarder.run_pass()
    assert {e["created_at"].date() for e in events if e["id"] in sink.delivered} == expected_days
    if start == "now":
        pg.fetch("INSERT INTO audit_logs (id, type, result) VALUES ('after-start', 'user.login', 'success') RETURNING id")
        forwarder.now = _ahead(forwarder, 1.2)  # the settle lag has passed, as far as the horizon can tell
        with forwarder.leased():
            forwarder.run_pass()
        assert list(sink.delivered) == ["after-start"]


def test_only_one_forwarder_per_sink(pg: PgDatabase, tmp_path) -> None:
    first = make_forwarder(pg.url, RecordingSink(), tmp_path)
    second = make_forwarder(pg.url, RecordingSink(), tmp_path)
    with first.leased(), pytest.raises(SinkBusy, match=r"being forwarded by .*only one forwarder per sink"):
        second.acquire(wait_seconds=0)
    second.acquire(wait_seconds=0)
    second.release()


def test_reads_are_bounded_by_read_events(pg: PgDatabase, tmp_path, monkeypatch) -> None:
    pg.insert(_events(500))
    sink = RecordingSink(max_batch_events=100)
    forwarder = make_forwarder(pg.url, sink, tmp_path, read_events=120)
    limits: list[int | None] = []
    original = forwarder.source.iter_batches

    def spy(*args, **kwargs):
        limits.append(kwargs.get("limit"))
        return original(*args, **kwargs)

    monkeypatch.setattr(forwarder.source, "iter_batches", spy)
    with forwarder.leased():
        assert forwarder.run_pass().delivered == 500
    assert limits and all(limit is not None and limit <= 120 for limit in limits)
    assert max(sink.batches) <= 100


def test_delivered_counts_per_day_leave_out_dead_letters_until_replayed(pg: PgDatabase, tmp_path) -> None:
    second = DAY + dt.timedelta(days=1)
    events = _events(30) + _events(20, second, seed=8)
    pg.insert(events)
    bad = {events[3]["id"], events[40]["id"]}
    rejecting = {"on": True}
    sink = RecordingSink(max_batch_events=7, policy=lambda i, _a: Outcome.REJECTED if i in bad and rejecting["on"] else Outcome.DELIVERED)
    forwarder = make_forwarder(pg.url, sink, tmp_path)
    with forwarder.leased():
        assert forwarder.run_pass().complete
    positions = forwarder.positions
    assert (positions.delivered_count("recorder", DAY), positions.delivered_count("recorder", second)) == (29, 19)
    rejecting["on"] = False
    with forwarder.leased():
        assert forwarder.replay_dead_letters().delivered == 2
    assert (positions.delivered_count("recorder", DAY), positions.delivered_count("recorder", second)) == (30, 20)


def test_a_late_commit_behind_the_position_is_swept_once(pg: PgDatabase, tmp_path) -> None:
    """A writer that stamps created_at itself and commits 30 s later: the next pass delivers it, once."""
    pg.fetch(
        "INSERT INTO audit_logs (id, type, result, created_at) SELECT 'recent-' || g, 'user.login', 'success', now() - g * interval '10 seconds'"
        " FROM generate_series(1, 50) AS g RETURNING id"
    )  # the last 8 minutes, inside the late window
    sink = RecordingSink(max_batch_events=20)
    forwarder = make_forwarder(pg.url, sink, tmp_path, late_window="15m")
    forwarder.now = _ahead(forwarder, 2.0)
    pg.fetch("INSERT INTO audit_logs (id, type, result) VALUES ('newest', 'user.login', 'success') RETURNING id")
    with forwarder.leased():
        assert forwarder.run_pass().late_events == 0
    pg.fetch("INSERT INTO audit_logs (id, type, result, created_at) VALUES ('late-30s', 'user.login', 'success', now() - interval '30 seconds') RETURNING id")
    with forwarder.leased():
        swept = forwarder.run_pass()
        again = forwarder.run_pass()
    assert swept.late_events == 1 and swept.delivered == 1 and "1 late" in swept.summary()
    assert again.late_events == 0 and again.delivered == 0
    assert sink.delivered["late-30s"] == 1 and max(sink.delivered.values()) == 1
    assert forwarder.positions.get("recorder").position.id == "newest"  # the sweep never moves the position


def test_a_failing_send_names_the_real_failure_not_the_waiting_events(pg: PgDatabase, tmp_path) -> None:
    pg.insert(_events(10))

    class Refused(RecordingSink):
        def send(self, batch: EventBatch) -> DeliveryReport:
            report = DeliveryReport([Outcome.RETRY] * len(batch), failure="connection refused by siem:443; check sinks.x.url")
            report.reasons = {i: "not sent yet: an earlier request of this batch must be retried first" for i in range(1, len(batch))}
            return report

    clock = FakeClock()
    forwarder = make_forwarder(pg.url, Refused(), tmp_path, clock=clock, retry={"initial_seconds": 1, "max_seconds": 2, "give_up_seconds": 5})
    with forwarder.leased():
        result = forwarder.run_pass()
    assert "last failure: connection refused by siem:443; check sinks.x.url" in result.stopped
    assert "retried first" not in result.stopped
    assert all(s <= 2 for s in clock.sleeps)  # full jitter, capped at max_seconds
