"""The HelloJohn API source against the stand-in API serving the real PostgreSQL table: both ways of
reading (``list`` pages and the ``export`` stream); the stream's own faults are in test_hellojohn_export_stream.py.

Every read is compared with what :class:`PostgresSource` reads from the same table, so
"exactly the table's rows" means same rows, same order, same values, column for column.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pytest

from audit_pipeline.config.settings import load_settings
from audit_pipeline.core.errors import ConfigError, SourceError
from audit_pipeline.core.event_filters import EventFilter
from audit_pipeline.sources.base import Position, TimeRange
from audit_pipeline.sources.hellojohn_api import HelloJohnApiSource
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.sources.registry import open_source
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.standins.hellojohn_api import DEFAULT_KEY, serve_hellojohn_api

UTC = dt.UTC
DAY = dt.date(2024, 1, 15)
DAY_RANGE = TimeRange.for_day(DAY)

#: Values that stress exactness: ties on created_at ordered bytewise, the day's edges, awkward metadata.
EDGE_EVENTS = [
    {"id": "edge-start", "created_at": "2024-01-15 00:00:00+00", "metadata": {"b": 1, "a": 2, "aa": [1.50, -0.5]}},
    {"id": "edge-before", "created_at": "2024-01-14 23:59:59.999999+00"},
    {"id": "edge-next-day", "created_at": "2024-01-16 00:00:00+00"},
    {"id": "edge-last", "created_at": "2024-01-15 23:59:59.999999+00", "ip_address": "10.1.0.0/16"},
    {"id": "tie-B", "created_at": "2024-01-15 12:00:00+00", "tenant_id": "ten_0001"},
    {"id": "tie-a", "created_at": "2024-01-15 12:00:00+00", "tenant_id": None},
    {"id": "tie-é", "created_at": "2024-01-15 12:00:00+00", "ip_address": "2001:db8::1"},
    {
        "id": "numbers",
        "created_at": "2024-01-15 13:00:00+00",
        "metadata": {"big": 123456789012345678901234567890, "dec": 1.50, "tiny": 1e-7, "neg": -1, "nested": {"z": None, "é": "🔐"}},
    },
    {"id": "text", "created_at": "2024-01-15 14:00:00+00", "actor_email": 'a "quoted",\nname', "metadata": {"ctrl": "\u0001", "q": '"', "bs": "\\"}},
    {"id": "array-meta", "created_at": "2024-01-15 15:00:00+00", "metadata": [1, "two", {"three": 3}]},
    {"id": "offset", "created_at": "2024-01-16 03:30:00+05", "country": "AR"},
]


@pytest.fixture
def table(pg):
    pg.insert(generate_events(DAY, 600))
    pg.insert(EDGE_EVENTS)
    return pg


def read_all(source, time_range=DAY_RANGE, **kwargs) -> pa.Table:
    batches = list(source.iter_batches(time_range, **kwargs))
    return pa.Table.from_batches(batches, schema=batches[0].schema) if batches else pa.table({})


def read_pg(pg, time_range=DAY_RANGE, **kwargs) -> pa.Table:
    with PostgresSource(pg.url, batch_rows=1_000) as source:
        return read_all(source, time_range, **kwargs)


def assert_same(api: pa.Table, expected: pa.Table) -> None:
    assert api.num_rows == expected.num_rows
    for name in expected.column_names:
        assert api[name].to_pylist() == expected[name].to_pylist(), name
    assert api.schema.equals(expected.schema)


def test_pages_429s_a_500_and_a_cut_body_yield_exactly_the_table(table):
    with serve_hellojohn_api(table.url, rate_limit_every=4, retry_after=2, fail_at={3}, drop_at={6}) as api:
        sleeps: list[float] = []
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, api_read="list", page_size=100, batch_rows=250, sleep=sleeps.append)
        result = read_all(source)
    expected = read_pg(table)
    assert expected.num_rows == 600 + 9  # the generated day plus the edge events inside it
    assert_same(result, expected)
    ids = result["id"].to_pylist()
    assert "edge-start" in ids and "edge-last" in ids and "edge-next-day" not in ids and "edge-before" not in ids
    assert ids.index("tie-B") < ids.index("tie-a") < ids.index("tie-é")  # bytewise, as COLLATE "C"
    # Retry-After honoured on every 429; the 500 and the cut body backed off instead.
    statuses = [r.status for r in api.requests]
    assert statuses.count(429) >= 2 and 500 in statuses and sleeps.count(2.0) == statuses.count(429)
    # A failed request is asked again with the same cursor: the cursor only moves after a good page.
    for failed, retry in zip(api.requests, api.requests[1:], strict=False):
        if failed.status != 200 or failed.number in (6,):
            assert retry.params == failed.params
    good_cursors = [r.params.get("cursor") for r in api.requests if r.status == 200 and r.number != 6]
    assert len(good_cursors) == len(set(good_cursors)) == 7  # 609 rows in pages of 100, each page fetched once


def test_events_repeated_across_pages_are_yielded_once(table):
    with serve_hellojohn_api(table.url, repeat_overlap=7) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, api_read="list", page_size=50)
        assert_same(read_all(source), read_pg(table))


@pytest.mark.parametrize("api_read", ["export", "list"])
def test_events_out_of_order_stop_the_read_with_a_clear_error(table, api_read):
    with serve_hellojohn_api(table.url, swap_in_page=True) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, api_read=api_read)
        with pytest.raises(SourceError, match=r"must come oldest first.*out of order cannot be exported"):
            read_all(source)


def test_nested_actor_and_resource_shape_gives_the_same_rows(table):
    with serve_hellojohn_api(table.url, shape="nested", last_cursor="absent") as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, api_read="list")
        assert_same(read_all(source), read_pg(table))


@pytest.mark.parametrize("api_read", ["export", "list"])
def test_resume_after_a_position_and_limit(table, api_read):
    expected = read_pg(table)
    row = expected.slice(300, 1).to_pylist()[0]
    after = Position(row["created_at"], row["id"])
    with serve_hellojohn_api(table.url) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, api_read=api_read)
        assert_same(read_all(source, after=after), expected.slice(301))
        assert_same(read_all(source, limit=42), expected.slice(0, 42))
        assert api.requests[-1].path == "/v1/audit-logs" and api.requests[-1].params["limit"] == "42"  # a few events: one small page
        assert_same(read_all(source, limit=250), expected.slice(0, 250))
        tie = Position(dt.datetime(2024, 1, 15, 12, tzinfo=UTC), "tie-B")
        assert read_all(source, after=tie)["id"].to_pylist()[:2] == ["tie-a", "tie-é"]


@pytest.mark.parametrize(
    "event_filter",
    [
        EventFilter(include_types=("user.*",), exclude_types=("user.logout", "*_failed")),
        EventFilter(include_types=("org.member_added",)),  # exact: sent to the API as type=
        EventFilter(include_tenants=("ten_0003",), exclude_types=("token.*",)),  # exact tenant: tenant_id=
        EventFilter(exclude_tenants=("ten_000?", ""), organizations=("org_00001", "org_00002", "org_00003")),
    ],
)
@pytest.mark.parametrize("api_read", ["export", "list"])
def test_filters_select_what_postgres_selects(table, event_filter, api_read):
    expected = read_pg(table, event_filter=event_filter)
    assert 0 < expected.num_rows < 600
    with serve_hellojohn_api(table.url) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, api_read=api_read)
        assert_same(read_all(source, event_filter=event_filter), expected)
        assert source.count(DAY_RANGE, event_filter) == expected.num_rows
        filtered_requests = list(api.requests)
        assert source.count(DAY_RANGE) == 609  # another filter is another count
    if event_filter.include_types == ("org.member_added",) and api_read == "list":
        assert all(r.params.get("type") == "org.member_added" for r in filtered_requests)


def test_count_pages_through_the_range(table):
    with serve_hellojohn_api(table.url) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, api_read="list")
        assert source.count(DAY_RANGE) == 609
        assert len(api.requests) == 4  # 609 events, 200 a page
        assert source.count_method == "paged list of the range read and counted (4 requests of up to 200 events)"


def test_count_reads_again_and_the_checks_count_goes_through_the_other_endpoint(table):
    with serve_hellojohn_api(table.url) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY)
        assert read_all(source).num_rows == 609
        assert source.count(DAY_RANGE) == 609  # a new read, never the events the last read yielded
        assert [r.path for r in api.requests] == ["/v1/audit-logs/export"] * 2  # each ends at the next day's first event
        assert source.count_method == "export stream of the range read and counted (1 request, settling and confirming included)"
        assert source.independent_count(DAY_RANGE) == 609
        assert [r.params["limit"] for r in api.requests[2:]] == ["200"] * 4  # 609 events, 200 a page
        assert (
            source.count_method
            == "paged list of the range read and counted (4 requests of up to 200 events): independent of the export read that published the day"
        )
        listed = HelloJohnApiSource(api.base_url, DEFAULT_KEY, api_read="list")
        assert listed.independent_count(DAY_RANGE) == 609
        assert api.requests[-1].path == "/v1/audit-logs/export"
        assert listed.count_method.endswith("): independent of the list read that published the day")
    with serve_hellojohn_api(table.url, export_endpoint=False) as api:
        listed = HelloJohnApiSource(api.base_url, DEFAULT_KEY, api_read="list")
        assert listed.independent_count(DAY_RANGE) == 609
        assert (
            listed.count_method
            == "paged list of the range read and counted (4 requests of up to 200 events): a second read, this server has no export endpoint"
        )


@pytest.mark.parametrize(("status", "options"), [(401, {"secret_key": "sk_other"}), (403, {"forbidden_keys": (DEFAULT_KEY,)})])
def test_refused_key_names_the_setting_and_never_the_key(table, status, options):
    with serve_hellojohn_api(table.url, **options) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY)
        with pytest.raises(SourceError) as info:
            source.check()
    message = str(info.value)
    assert "source.secret_key" in message and "HJ_SECRET_KEY" in message and f"HTTP {status}" in message
    assert DEFAULT_KEY not in message and DEFAULT_KEY not in repr(source) and DEFAULT_KEY not in source.description
    assert len(api.requests) == 1  # not retried


def test_a_server_that_keeps_failing_gives_up_after_the_attempts(table):
    with serve_hellojohn_api(table.url, fail_at=set(range(1, 50))) as api:
        sleeps: list[float] = []
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, api_read="list", max_attempts=3, sleep=sleeps.append)
        with pytest.raises(SourceError, match=r"kept failing \(HTTP 500.*after 3 attempts"):
            read_all(source)
    assert len(api.requests) == 3 and len(sleeps) == 2 and all(0 <= s <= 30 for s in sleeps)


def test_a_retry_after_beyond_the_limit_fails_instead_of_hanging(table):
    with serve_hellojohn_api(table.url, rate_limit_every=1, retry_after=3600) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, sleep=lambda s: pytest.fail("must not wait an hour"))
        with pytest.raises(SourceError, match=r"asks to wait 3600 s.*run the export again later"):
            read_all(source)


@pytest.mark.parametrize(
    ("rewrite", "message"),
    [
        (lambda t: t.replace('"created_at": "2024-01-15T13:00:00.000000Z"', '"created_at": "2024-01-15T13:00:00"'), r"event 'numbers'.*has no offset"),
        (lambda t: t.replace('"created_at": "2024-01-15T13:00:00.000000Z"', '"created_at": "2024-01-15T13:00:00.0000001Z"'), r"'numbers'.*microsecond"),
        (lambda t: t.replace('"id": "numbers", "type": "user.login"', '"id": "numbers", "type": 7'), r"event 'numbers' with type = 7"),
        (lambda t: t.replace('"id": "numbers", "type": "user.login", ', '"id": "numbers", '), r"event 'numbers' without 'type'"),
        (lambda t: t.replace('"tiny":1E-7', '"tiny":NaN'), r"not JSON"),
        (
            lambda t: t.replace('"id": "numbers", "type": "user.login"', '"id": "numbers", "type": "user.login\\ud800"'),
            r"event 'numbers' whose type is not valid",
        ),
        (lambda t: t.replace('"id": "numbers", "type": "user.login"', '"id": "", "type": "user.login"'), r"with an empty id"),
        (lambda t: t.replace(', "metadata": {"nested"', ', "meta_data": {"nested"'), r"event 'numbers' without 'metadata'"),
        (lambda t: t.replace('"created_at": "2024-01-15T13:00:00.000000Z"', '"created_at": 1705323600'), r"'numbers' with created_at 1705323600"),
        (lambda t: t.replace('"data": [', '"events": ['), r"no 'data' list"),
    ],
)
def test_malformed_events_fail_naming_the_event(table, rewrite, message):
    with serve_hellojohn_api(table.url, rewrite=rewrite) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, api_read="list")
        with pytest.raises(SourceError, match=message):
            read_all(source)


def test_configured_from_yaml_with_the_key_in_the_environment(table, workdir: Path, monkeypatch):
    with serve_hellojohn_api(table.url) as api:
        config = workdir / "audit_pipeline.yaml"
        config.write_text(f"source:\n  type: hellojohn_api\n  base_url: {api.base_url}/v1/\n  secret_key: ${{HJ_SECRET_KEY}}\n")
        with pytest.raises(ConfigError, match=r"source.secret_key.*HJ_SECRET_KEY is not set"):
            load_settings()
        monkeypatch.setenv("HJ_SECRET_KEY", DEFAULT_KEY)
        settings = load_settings()
        with open_source(settings) as source:
            assert isinstance(source, HelloJohnApiSource)
            source.check()
            assert source.count(DAY_RANGE) == 609
            assert DEFAULT_KEY not in repr(settings) and DEFAULT_KEY not in source.description


@pytest.mark.parametrize(
    ("source_yaml", "message"),
    [
        ("type: hellojohn_api\n  secret_key: sk_x", r"source.base_url: is required"),
        ("type: hellojohn_api\n  base_url: https://auth.example.com", r"source.secret_key: is required"),
        ("type: hellojohn_api\n  base_url: http://auth.example.com\n  secret_key: sk_x", r"plain http.*use https"),
        ("type: hellojohn_api\n  base_url: auth.example.com\n  secret_key: sk_x", r"source.base_url must be the HelloJohn server's URL"),
        ("type: hellojohn_api\n  base_url: https://auth.example.com\n  secret_key: '  '", r"source.secret_key .*is empty"),
    ],
)
def test_configuration_mistakes_name_the_key(workdir: Path, source_yaml, message):
    (workdir / "audit_pipeline.yaml").write_text(f"source:\n  {source_yaml}\n")
    with pytest.raises(ConfigError, match=message):
        open_source(load_settings())


def test_a_wrong_base_url_says_to_check_it(table):
    with serve_hellojohn_api(table.url) as api:
        source = HelloJohnApiSource(api.base_url + "/hellojohn", DEFAULT_KEY)
        with pytest.raises(SourceError, match=r"HTTP 404.*check source.base_url"):
            source.check()


@pytest.mark.skipif(
    not (os.environ.get("AUDIT_TEST_HELLOJOHN_URL") and os.environ.get("AUDIT_TEST_HELLOJOHN_KEY")),
    reason="set AUDIT_TEST_HELLOJOHN_URL and AUDIT_TEST_HELLOJOHN_KEY (an admin secret key) to read from a real HelloJohn server",
)
def test_against_a_real_hellojohn_server():
    """Reads the last closed hour: events oldest first, each once, count() agreeing with the read."""
    source = HelloJohnApiSource(os.environ["AUDIT_TEST_HELLOJOHN_URL"], os.environ["AUDIT_TEST_HELLOJOHN_KEY"])
    source.check()
    end = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    window = TimeRange(end - dt.timedelta(hours=1), end)
    rows = [row for batch in source.iter_batches(window) for row in batch.to_pylist()]
    keys = [(r["created_at"], r["id"].encode()) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert all(window.start <= r["created_at"] < window.end for r in rows)
    assert source.count(window) == len(rows)
