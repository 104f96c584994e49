"""One pattern language everywhere: PostgreSQL (LIKE), the demo database (GLOB) and EventFilter.matches
(used for the HelloJohn API) select exactly the same events, including for awkward characters."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.core.event_filters import EventFilter, check_pattern, describe
from audit_pipeline.sources.base import TimeRange
from audit_pipeline.sources.demo import DemoSource
from audit_pipeline.sources.postgres import PostgresSource

DAY = dt.date(2024, 1, 15)
TYPES = [
    "user.login",
    "user_login",
    "user%login",
    "user\\login",
    "USER.login",
    "user.login.extra",
    "user.",
    "a*b",
    "a?b",
    "axb",
    "é.x",
    "line\nbreak",
    "org.member_added",
]
TENANTS = [None, "", "ten_1", "ten%1", "tenX1", "ten_10", "Ten_1"]
ORGS = [None, "org_1", "org_2"]


def _events() -> list[dict]:
    start = dt.datetime(2024, 1, 15, tzinfo=dt.UTC)
    events = []
    n = 0
    for t in TYPES:
        for tenant in TENANTS:
            events.append(
                {
                    "id": f"e{n:04d}",
                    "type": t,
                    "tenant_id": tenant,
                    "organization_id": ORGS[n % 3],
                    "created_at": start + dt.timedelta(seconds=n),
                    "result": "success",
                    "metadata": {},
                }
            )
            n += 1
    return events


FILTERS = [
    EventFilter(include_types=("user.*",)),
    EventFilter(include_types=("user_*",)),  # '_' is a literal, not LIKE's any-character
    EventFilter(include_types=("user%*",)),  # '%' is a literal
    EventFilter(include_types=("user\\*",)),  # '\' is a literal
    EventFilter(include_types=("user.?ogin",)),
    EventFilter(include_types=("a*b",)),
    EventFilter(include_types=("a?b",), exclude_types=("axb",)),
    EventFilter(include_types=("*.*",), exclude_types=("user.*", "*\n*")),
    EventFilter(include_types=("*",), exclude_types=("*",)),
    EventFilter(include_types=("é.?",)),
    EventFilter(include_types=("line*",)),
    EventFilter(include_tenants=("ten_1",)),
    EventFilter(include_tenants=("ten_?",)),
    EventFilter(include_tenants=("*",)),  # a NULL tenant matches as ""
    EventFilter(exclude_tenants=("ten*",)),
    EventFilter(exclude_tenants=("?*",)),  # keeps NULL and "" only
    EventFilter(include_types=("user*",), exclude_tenants=("ten%1",), organizations=("org_1",)),
    EventFilter(organizations=("org_1", "org_2")),
]


@pytest.fixture
def loaded(pg, tmp_path: Path):
    events = _events()
    pg.insert(events)
    demo = DemoSource(tmp_path / "demo.db")
    from audit_pipeline.sources.demo import metadata_obj

    metadata_obj.create_all(demo.engine)
    with demo.engine.begin() as conn:
        DemoSource.insert(conn, events)
    yield pg, demo, events
    demo.close()


def _ids(source, event_filter) -> list[str]:
    return [i for b in source.iter_batches(TimeRange.for_day(DAY), event_filter=event_filter) for i in b.column(0).to_pylist()]


def test_postgres_demo_and_matches_select_the_same_events(loaded):
    pg, demo, events = loaded
    with PostgresSource(pg.readonly_url) as postgres:
        for event_filter in FILTERS:
            expected = [e["id"] for e in events if event_filter.matches(e["type"], e["tenant_id"], e["organization_id"])]
            assert _ids(postgres, event_filter) == expected, event_filter
            assert postgres.count(TimeRange.for_day(DAY), event_filter) == len(expected), event_filter
            assert _ids(demo, event_filter) == expected, event_filter
    assert len({len(_ids(demo, f)) for f in FILTERS}) > 5  # the filters really differ


@pytest.mark.parametrize("pattern", ["", "user.[ab]", "a\x00b"])
def test_unusable_patterns_are_refused(pattern):
    with pytest.raises(ValueError):
        check_pattern(pattern)


def test_postgres_refuses_character_classes_with_a_config_error(pg):
    with PostgresSource(pg.readonly_url) as postgres, pytest.raises(ConfigError, match="character classes"):
        postgres.count(TimeRange.for_day(DAY), EventFilter(include_types=("user.[ab]",)))


def test_describe_lists_only_the_patterns_in_use():
    assert describe(None) == {} and describe(EventFilter()) == {}
    assert describe(EventFilter(include_types=("a.*",), exclude_tenants=("t1",), organizations=("o",))) == {
        "include_types": ["a.*"],
        "exclude_tenants": ["t1"],
        "organizations": ["o"],
    }
