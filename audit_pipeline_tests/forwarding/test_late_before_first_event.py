"""A row stamped before the first event a new sink received, committed after its first pass, reaches it exactly once.

The late-commit ledger covers a new sink from where it starts (issue 25): before, it covered the
window only from its first entry, so such a row was never forwarded.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import psycopg
import pytest

from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.forwarding.conftest import RecordingSink, make_forwarder
from audit_pipeline_tests.sinks.test_forward_e2e import Pipeline, pipeline  # noqa: F401  (the fixture)
from audit_pipeline_tests.sinks.test_late_and_oversized import SINKS, _received, everywhere  # noqa: F401  (the fixture)

UTC = dt.UTC


def _insert_at(url: str, event_id: str, seconds_ago: float) -> None:
    """An event stamped ``seconds_ago`` by the database clock, committed now (as a writer stamping it itself would)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO audit_logs (id, type, result, actor_email, created_at) VALUES (%s, 'user.login', 'success', 'late@example.com', now() - %s * interval '1 second')",
            (event_id, seconds_ago),
        )


@pytest.mark.slow
def test_a_row_stamped_before_a_new_sinks_first_event_reaches_every_sink_kind_exactly_once(everywhere, pg) -> None:  # noqa: F811
    p, es = everywhere
    pg.fetch("DELETE FROM audit_logs RETURNING id")  # a new deployment: the first event is the one below
    _insert_at(pg.url, "alog_first", 2)
    for sink in SINKS:  # each new sink (start: earliest) receives its first event
        result = p.forward(sink)
        assert result.exit_code == 0, result.output
    before = _received(p, es)
    assert all(counts == Counter({"alog_first": 1}) for counts in before.values()), before

    _insert_at(pg.url, "alog_before_first", 60)  # stamped a minute before that first event, committed after the pass
    for sink in SINKS:
        result = p.forward(sink)
        assert result.exit_code == 0, result.output
        assert "1 late (committed after the position had passed them)" in result.output, (sink, result.output)
    for sink in SINKS:  # later passes send nothing again
        result = p.forward(sink)
        assert result.exit_code == 0 and "late (committed" not in result.output, (sink, result.output)
    after = _received(p, es)
    for sink, counts in after.items():
        assert counts == Counter({"alog_first": 1, "alog_before_first": 1}), (sink, counts)
    assert es.documents().keys() >= {"alog_first", "alog_before_first"}
    assert not es.duplicates() and es.conflicts == 0


def _ahead(forwarder, seconds: float):
    return lambda: forwarder.source.now() + dt.timedelta(seconds=seconds)


def test_a_sink_starting_at_a_day_gets_a_late_row_of_that_day_but_not_one_before_it(pg: PgDatabase, tmp_path) -> None:
    yesterday = dt.datetime.now(UTC).date() - dt.timedelta(days=1)
    sink = RecordingSink()
    forwarder = make_forwarder(pg.url, sink, tmp_path, start=yesterday, late_window=3 * 86_400)
    forwarder.now = _ahead(forwarder, 5)
    _insert_at(pg.url, "first", 1)
    with forwarder.leased():
        assert forwarder.run_pass().delivered == 1
    start = dt.datetime(yesterday.year, yesterday.month, yesterday.day, tzinfo=UTC)
    seconds_since_start = (dt.datetime.now(UTC) - start).total_seconds()
    _insert_at(pg.url, "late-after-start", seconds_since_start - 60)  # after the sink's start, before its first event
    _insert_at(pg.url, "late-before-start", seconds_since_start + 60)  # before the sink's start: never owed to it
    with forwarder.leased():
        result = forwarder.run_pass()
        again = forwarder.run_pass()
    assert result.late_events == 1 and again.late_events == 0
    assert sink.delivered == Counter({"first": 1, "late-after-start": 1})


def test_growing_the_late_window_after_pruning_resends_nothing(pg: PgDatabase, tmp_path) -> None:
    sink = RecordingSink()
    small = make_forwarder(pg.url, sink, tmp_path, late_window=30)
    small.now = _ahead(small, 5)
    _insert_at(pg.url, "old", 120)
    with small.leased():
        assert small.run_pass().delivered == 1
    _insert_at(pg.url, "new", 1)
    with small.leased():
        assert small.run_pass().delivered == 1  # the entry of "old" is pruned: more than 30 s behind "new"
    large = make_forwarder(pg.url, sink, tmp_path, late_window=900)
    large.now = _ahead(large, 5)
    with large.leased():
        result = large.run_pass()
    assert result.late_events == 0 and sink.delivered == Counter({"old": 1, "new": 1})


def test_turning_the_sweep_off_and_on_again_resends_nothing(pg: PgDatabase, tmp_path) -> None:
    sink = RecordingSink()
    on = make_forwarder(pg.url, sink, tmp_path)
    on.now = _ahead(on, 5)
    _insert_at(pg.url, "a", 60)
    with on.leased():
        on.run_pass()
    off = make_forwarder(pg.url, sink, tmp_path, late_window=0)
    off.now = _ahead(off, 5)
    _insert_at(pg.url, "b", 30)  # delivered with no ledger entry
    with off.leased():
        off.run_pass()
    _insert_at(pg.url, "c", 1)
    again = make_forwarder(pg.url, sink, tmp_path)
    again.now = _ahead(again, 5)
    with again.leased():
        first = again.run_pass()
        second = again.run_pass()
    assert first.late_events == 0 and second.late_events == 0
    assert sink.delivered == Counter({"a": 1, "b": 1, "c": 1})
