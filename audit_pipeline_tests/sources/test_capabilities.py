"""Optional source capabilities are declared on AuditSource with defaults, so no caller probes with getattr.

The demo database has none of its own: it answers with the interface's defaults, and those defaults give
what PostgreSQL's one-query overrides give for the same events.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from audit_pipeline.checks.day import count_for_complete
from audit_pipeline.forwarding.horizon import source_now
from audit_pipeline.sources.base import Position, TimeRange
from audit_pipeline.sources.demo import DemoSource
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.sources.synthetic import generate_events

DAY = dt.date(2024, 1, 15)


@pytest.fixture
def demo(tmp_path: Path):
    source = DemoSource(tmp_path / "demo.db")
    source.seed([DAY], per_day=50)
    with source:
        yield source


def _positions(source) -> list[Position]:
    return [Position(r["created_at"], r["id"]) for b in source.iter_batches(TimeRange.for_day(DAY)) for r in b.select(["created_at", "id"]).to_pylist()]


def test_a_source_without_capabilities_answers_with_the_documented_defaults(demo: DemoSource) -> None:
    assert demo.now() is None
    assert demo.can_see_other_transactions() is None
    assert demo.oldest_prepared_start() is None
    assert demo.can_see_prepared_transactions() is None
    assert demo.count_through(dt.datetime(2024, 1, 1, tzinfo=dt.UTC), Position(dt.datetime(2024, 2, 1, tzinfo=dt.UTC), "")) is None
    assert count_for_complete(demo)(TimeRange.for_day(DAY), None) == demo.count(TimeRange.for_day(DAY)) == 50
    # no database clock: ours
    before = dt.datetime.now(dt.UTC)
    assert before <= source_now(demo) <= dt.datetime.now(dt.UTC)


def test_the_default_next_after_reads_the_first_event_after_a_position(demo: DemoSource) -> None:
    positions = _positions(demo)
    assert demo.next_after(None) == positions[0].created_at
    assert demo.next_after(positions[9]) == positions[10].created_at
    assert demo.next_after(positions[-1]) is None


def test_postgres_overrides_agree_with_the_defaults(pg, demo: DemoSource) -> None:
    pg.insert(generate_events(DAY, 50))
    with PostgresSource(pg.readonly_url) as source:
        assert isinstance(source.now(), dt.datetime)
        assert source.can_see_other_transactions() in (True, False)
        positions = _positions(source)
        assert source.next_after(positions[9]) == positions[10].created_at
        assert source.next_after(positions[-1]) is None
        assert source.count_through(TimeRange.for_day(DAY).start, positions[9]) == 10
