"""The export stream against the stand-in's documented export endpoint: caps, cut connections,
long lines and rounds of resuming, each read compared row for row with PostgreSQL's."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from pathlib import Path

import httpx
import pytest

from audit_pipeline.config.settings import ExportSettings, load_settings
from audit_pipeline.core.errors import SourceError
from audit_pipeline.core.isotime import format_instant
from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.exports.day import export_day
from audit_pipeline.sources.base import TimeRange
from audit_pipeline.sources.hellojohn_api import HelloJohnApiSource
from audit_pipeline.sources.hellojohn_export import LineSplitter, _decoded, _Truncated
from audit_pipeline.sources.registry import open_source
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.sources.test_hellojohn_api import DAY, DAY_RANGE, EDGE_EVENTS, assert_same, read_all, read_pg
from audit_pipeline_tests.standins.hellojohn_api import DEFAULT_KEY, EXPORT_FIELDS, serve_hellojohn_api
from benchmarks.synthetic_sql import generate_sql

EXPORT = "/v1/audit-logs/export"


def _tied(pg, rows: int, same_timestamp: int) -> None:
    """``rows`` events of the day, ``same_timestamp`` of them sharing each instant (ids in insertion order)."""
    with pg.connect() as conn:
        conn.execute(generate_sql(rows, same_timestamp=same_timestamp))


def _exports(api) -> list[tuple[str, int]]:
    return [(r.params["from"], r.status) for r in api.requests if r.path == EXPORT]


@pytest.fixture
def table(pg):
    pg.insert(generate_events(DAY, 1_500))
    pg.insert(EDGE_EVENTS)
    return pg


def test_an_uncapped_day_is_one_request_with_the_documented_headers(table):
    with serve_hellojohn_api(table.url) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY)
        assert_same(read_all(source), read_pg(table))
    [request] = api.requests
    assert request.path == EXPORT and request.status == 200
    assert request.params == {"format": "json", "from": "2024-01-15T00:00:00Z", "to": "2024-01-16T00:00:00Z"}
    assert request.headers["accept"] == "application/ndjson" and request.headers["accept-encoding"] == "gzip"


@pytest.mark.slow
def test_a_capped_day_is_resumed_across_instants_shared_at_the_cut_points(pg):
    """250,000 events, 1,000 sharing each instant, served at most 100,000 a response: each exactly once."""
    _tied(pg, 250_000, same_timestamp=1_000)
    with serve_hellojohn_api(pg.url, export_row_cap=100_000) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY)
        result = read_all(source)
    expected = read_pg(pg)
    assert expected.num_rows == 250_000
    assert result.equals(expected)  # same rows, order and values (Arrow's own comparison: quick at this size)
    first, second, third, last = api.export_requests
    assert first.rows == second.rows == 100_000 and 0 < third.rows < 100_000 and last.rows == 0  # the last answer brings nothing: the end
    # The 1,000 events of the instant where the first response stopped come from the list, 200 a page (999 of them new).
    cut = expected["created_at"][99_999].as_py()
    assert expected["created_at"][99_999] == expected["created_at"][100_998] != expected["created_at"][100_999]
    settled = [r for r in api.list_requests if r.params["from"] == format_instant(cut)]
    assert len(settled) == 5 and all(r.params["to"] == format_instant(cut + dt.timedelta(microseconds=1)) for r in settled)
    assert second.params["from"] == format_instant(cut + dt.timedelta(microseconds=1))  # the rest, from the microsecond after


def test_a_day_of_exactly_the_cap_asks_once_more_and_ends(pg):
    _tied(pg, 2_000, same_timestamp=1)
    with serve_hellojohn_api(pg.url) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, export_row_cap=2_000)
        assert_same(read_all(source), read_pg(pg))
    # The range, its last instant settled through the list, then the rest of the range: nothing.
    assert [(r.path, r.rows) for r in api.requests] == [(EXPORT, 2_000), ("/v1/audit-logs", 0), (EXPORT, 0)]


def test_a_cap_other_than_the_configured_one_is_followed_up(pg):
    _tied(pg, 2_500, same_timestamp=10)
    with serve_hellojohn_api(pg.url, export_row_cap=1_000) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, export_row_cap=0)  # configured as uncapped
        assert_same(read_all(source), read_pg(pg))
    rows = [r.rows for r in api.export_requests]
    assert rows[:2] == [1_000, 1_000] and 0 < rows[2] < 500 and rows[3:] == [0]  # the ties at each cut came through the list


@pytest.mark.parametrize("compressed", [True, False])
def test_a_connection_cut_mid_line_is_resumed_without_loss_or_repeats(table, compressed):
    with serve_hellojohn_api(table.url, export_cut_after={1: 700, 3: 300}, export_gzip=compressed) as api:  # request 2 settles an instant
        sleeps: list[float] = []
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, sleep=sleeps.append)
        result = read_all(source)
    assert_same(result, read_pg(table))
    assert [r.rows for r in api.export_requests] == [
        700,
        300,
        1_509 - 1_000 + 1,
    ] and not sleeps  # + the next day's first event, which ends the read  # progress each time: resumed at once


def test_429_and_500_before_the_body_wait_as_the_list_reads_do(table):
    with serve_hellojohn_api(table.url, rate_limit_every=2, retry_after=3, fail_at={1}, export_cut_after={3: 100}) as api:
        sleeps: list[float] = []
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, sleep=sleeps.append)
        assert_same(read_all(source), read_pg(table))
    assert [s for _, s in _exports(api)] == [500, 429, 200, 429, 200]
    assert sleeps[1] == 3.0 and sleeps[2] == 3.0 and 0 <= sleeps[0] <= 30


def test_a_connection_that_keeps_dropping_before_anything_new_fails_and_publishes_nothing(table, tmp_path: Path):
    cuts = {n: 0 for n in range(3, 30)}  # request 1 is the source check's probe; the day's first response is cut after 100 events, later ones at once
    cuts[2] = 100
    with serve_hellojohn_api(table.url, export_cut_after=cuts) as api:
        sleeps: list[float] = []
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, max_attempts=4, sleep=sleeps.append)
        store = ObjectStore(str(tmp_path / "exports"))
        with pytest.raises(SourceError, match=r"resuming from 2024-01-15T\S+ made no progress, the connection failed.*\(4 attempts\); nothing was published"):
            export_day(source, store, DAY, ExportSettings())
    assert len(api.export_requests) == 1 + 5 and len(sleeps) == 3  # the check's probe, then the day
    assert store.list("") == []


def test_more_events_at_one_instant_than_a_response_holds_come_through_the_list(pg):
    _tied(pg, 300, same_timestamp=300)  # all but one at one instant
    with serve_hellojohn_api(pg.url, export_row_cap=100) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, export_row_cap=100)
        assert_same(read_all(source), read_pg(pg))
    # 100 from the stream, the instant's others through two pages of the list (the first 100 skipped as known), then the rest.
    first, *_ = api.requests
    settled = [r for r in api.list_requests if r.params["from"] == "2024-01-15T00:00:00Z"]
    assert first.rows == 100 and len(settled) == 2 and api.export_requests[1].params["from"] == "2024-01-15T00:00:00.000001Z"


def test_a_line_of_megabytes_streams_and_resumes_when_cut_inside_it(table):
    big = {"blob": "x" * (6 * 2**20), "n": 1.50, "é": ["🔐"]}
    table.insert([{"id": "big", "created_at": "2024-01-15 12:00:00.5+00", "metadata": big}])
    position = read_pg(table)["id"].to_pylist().index("big")
    with serve_hellojohn_api(table.url, export_cut_after={1: position}) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY)
        result = read_all(source)
    assert_same(result, read_pg(table))
    assert len(api.export_requests) == 2


def test_malformed_lines_fail_naming_the_line_or_event(table):
    rewrite = lambda line: line.replace('"id":"numbers"', '"id":"numbers",,') if '"id":"numbers"' in line else line  # noqa: E731
    with serve_hellojohn_api(table.url, rewrite=rewrite) as api, pytest.raises(SourceError, match=r"export stream at .* sent line \d+ that is not JSON"):
        read_all(HelloJohnApiSource(api.base_url, DEFAULT_KEY))
    rewrite = lambda line: line.replace('"type":"user.login"', '"type":7') if '"id":"numbers"' in line else line  # noqa: E731
    with serve_hellojohn_api(table.url, rewrite=rewrite) as api, pytest.raises(SourceError, match=r"event 'numbers' with type = 7"):
        read_all(HelloJohnApiSource(api.base_url, DEFAULT_KEY))


def test_api_read_and_export_row_cap_from_the_configuration(table, workdir: Path, monkeypatch):
    monkeypatch.setenv("HJ_SECRET_KEY", DEFAULT_KEY)
    with serve_hellojohn_api(table.url, export_row_cap=500) as api:
        config = workdir / "audit_pipeline.yaml"
        base = f"source:\n  type: hellojohn_api\n  base_url: {api.base_url}\n  secret_key: ${{HJ_SECRET_KEY}}\n"
        config.write_text(base + "  export_row_cap: 500\n")
        with open_source(load_settings()) as source:
            assert source.count(DAY_RANGE) == 1_509
        assert [r.rows for r in api.export_requests][:3] == [500, 500, 500] and len(api.export_requests) == 4
        settling = len(api.list_requests)  # the last instant of each capped response, through the list
        config.write_text(base + "  api_read: list\n")
        with open_source(load_settings()) as source:
            assert source.count(DAY_RANGE) == 1_509
        assert settling == 3 and len(api.list_requests) == settling + 8


def test_the_standin_serves_the_documented_csv_and_ndjson(table):
    assert EXPORT_FIELDS == COLUMNS  # the documentation's columns are the table's
    with serve_hellojohn_api(table.url) as api:
        auth = {"Authorization": f"Bearer {DEFAULT_KEY}"}
        params = {"from": "2024-01-15T00:00:00Z", "to": "2024-01-15T23:59:59Z"}
        response = httpx.get(f"{api.base_url}{EXPORT}", params={**params, "format": "csv"}, headers={**auth, "Accept": "text/csv"})
        assert response.headers["content-type"].startswith("text/csv") and response.headers["content-encoding"] == "gzip"
        in_range = table.fetch("SELECT count(*) FROM audit_logs WHERE created_at BETWEEN '2024-01-15T00:00:00Z' AND '2024-01-15T23:59:59Z'")[0][0]
        rows = list(csv.reader(io.StringIO(response.text)))
        assert tuple(rows[0]) == EXPORT_FIELDS and len(rows) == 1 + in_range
        assert next(r for r in rows if r[0] == "text")[3] == 'a "quoted",\nname'
        raw = httpx.get(f"{api.base_url}{EXPORT}", params={**params, "format": "ndjson"}, headers={**auth, "Accept-Encoding": "identity"})
        assert "content-encoding" not in raw.headers
        lines = raw.text.splitlines()
        assert all(tuple(json.loads(line)) == EXPORT_FIELDS for line in lines) and len(lines) == in_range
        assert httpx.get(f"{api.base_url}{EXPORT}", params=params).status_code == 401


@pytest.mark.parametrize(
    ("chunks", "lines", "tail"),
    [
        ([b'{"a":1}\n{"b"', b":2}\n", b"{"], [b'{"a":1}', b'{"b":2}'], b"{"),
        ([b"x" * 10, b"y" * 10, b"z\n"], [b"x" * 10 + b"y" * 10 + b"z"], b""),
        ([b"\n\n", b"a"], [b"", b""], b"a"),
    ],
)
def test_lines_are_joined_across_chunks(chunks, lines, tail):
    splitter = LineSplitter()
    assert [line for chunk in chunks for line in splitter.feed(chunk)] == lines
    assert splitter.tail() == tail


def test_time_range_ends_are_sent_and_events_past_the_end_stop_the_stream(table):
    hour = TimeRange(dt.datetime(2024, 1, 15, 12, tzinfo=dt.UTC), dt.datetime(2024, 1, 15, 13, tzinfo=dt.UTC))
    with serve_hellojohn_api(table.url) as api:
        source = HelloJohnApiSource(api.base_url, DEFAULT_KEY)
        assert_same(read_all(source, hour), read_pg(table, hour))
    assert api.export_requests[0].params["to"] == "2024-01-15T13:00:00Z"


def test_a_server_without_the_export_endpoint_is_told_apart_at_the_check(table):
    with serve_hellojohn_api(table.url, export_endpoint=False) as api:
        with pytest.raises(SourceError, match=r"HTTP 404 to GET /v1/audit-logs/export.*check source.base_url.*source.api_read: list"):
            HelloJohnApiSource(api.base_url, DEFAULT_KEY).check()
        listed = HelloJohnApiSource(api.base_url, DEFAULT_KEY, api_read="list")
        listed.check()
        assert read_all(listed).num_rows == 1_509
    assert [r.path for r in api.requests][:2] == [EXPORT, "/v1/audit-logs"]


def test_a_chunk_that_compresses_well_is_inflated_a_megabyte_at_a_time():
    body = gzip.compress(b'{"a": 1}\n' * 2_000_000, 9) * 2  # two gzip members, 18 MB inflated each, in one network chunk
    pieces = list(_decoded(httpx.Response(200, content=iter([body]), headers={"Content-Encoding": "gzip"})))
    assert max(len(p) for p in pieces) <= 2**20 and sum(len(p) for p in pieces) == 2 * 18_000_000
    with pytest.raises(_Truncated, match="gzip body ended"):
        list(_decoded(httpx.Response(200, content=iter([body[: len(body) // 4]]), headers={"Content-Encoding": "gzip"})))
