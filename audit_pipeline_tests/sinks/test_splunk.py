"""The Splunk HEC sink against the stand-in collector: envelopes, limits, HEC codes, acknowledgements."""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal

import pytest

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.sinks.base import Outcome, SinkFailure
from audit_pipeline.sinks.splunk import SplunkSink
from audit_pipeline_tests.sinks.events import batch_of, synthetic
from audit_pipeline_tests.standins.receiver import Fault
from audit_pipeline_tests.standins.splunk import SplunkHec

TOKEN = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def hec():
    with SplunkHec(token=TOKEN) as server:
        yield server


def make_sink(hec: SplunkHec, **overrides) -> SplunkSink:
    return SplunkSink.from_config({"hec_url": hec.url, "hec_token": TOKEN, "index": "hellojohn", "host": "exporter-1", **overrides})


def epoch(value: dt.datetime) -> Decimal:
    micros = (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    return Decimal(micros) / Decimal(1_000_000)


def test_events_arrive_as_concatenated_envelopes_with_exact_time(hec):
    events = synthetic(30)
    events[3]["created_at"] = dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)  # before the epoch
    events[4]["metadata"] = {"big": 123456789012345678901234567890, "n": 1.50}
    batch = batch_of(events)
    report = make_sink(hec).send(batch)
    assert report.outcomes == [Outcome.DELIVERED] * 30
    (request,) = hec.requests
    assert request.headers["authorization"] == f"Splunk {TOKEN}"
    assert request.body.startswith(b'{"time":') and b'}{"time":' in request.body  # one envelope after another
    assert hec.wire_errors == []
    for n, envelope in enumerate(hec.events):
        assert envelope["time"] == epoch(events[n]["created_at"])
        assert len(str(envelope["time"]).split(".")[1]) == 6  # always six fractional digits
        assert (envelope["host"], envelope["source"], envelope["sourcetype"], envelope["index"]) == ("exporter-1", "hellojohn-audit", "_json", "hellojohn")
        assert envelope["event"] == json.loads(batch.line(n), parse_float=Decimal)
    assert hec.events[3]["time"] == Decimal("-0.000001")
    assert hec.events[4]["event"]["metadata"]["big"] == 123456789012345678901234567890


def test_without_an_index_the_tokens_default_index_applies(hec):
    make_sink(hec, index=None).send(batch_of(synthetic(2)))
    assert b'"index"' not in hec.requests[0].body
    assert [e["index"] for e in hec.events] == ["main", "main"]


def test_requests_are_split_below_the_servers_content_limit(hec):
    hec.max_content_length = 20_000
    batch = batch_of(synthetic(200))
    report = make_sink(hec, max_request_bytes=20_000).send(batch)
    assert report.outcomes == [Outcome.DELIVERED] * 200
    assert len(hec.requests) > 5 and all(len(r.body) <= 20_000 for r in hec.requests)
    assert [e["event"]["id"] for e in hec.events] == batch.ids
    assert hec.wire_errors == []


def test_413_splits_the_request(hec):
    hec.fail(Fault(status=413, body=b"Content-Length of 9999999 too large (maximum is 1000000)"))
    batch = batch_of(synthetic(6))
    report = make_sink(hec).send(batch)
    assert report.outcomes == [Outcome.DELIVERED] * 6
    assert [e["event"]["id"] for e in hec.events] == batch.ids
    assert len(hec.requests) == 3


def test_a_busy_server_is_retried_after_its_delay(hec):
    hec.fail(Fault(status=503, headers={"Retry-After": "3"}, body=b'{"text":"Server is busy","code":9}'))
    batch = batch_of(synthetic(4))
    sink = make_sink(hec)
    first = sink.send(batch)
    assert first.outcomes == [Outcome.RETRY] * 4 and first.retry_after == 3
    assert "503" in first.reasons[0]
    assert sink.send(batch).outcomes == [Outcome.DELIVERED] * 4
    assert [e["event"]["id"] for e in hec.events] == batch.ids


@pytest.mark.parametrize("fault", [Fault(disconnect=True), Fault(status=500, body=b'{"text":"Internal server error","code":8}')])
def test_lost_connections_and_server_errors_are_retried(hec, fault):
    hec.fail(fault)
    sink = make_sink(hec)
    assert sink.send(batch_of(synthetic(3))).outcomes == [Outcome.RETRY] * 3
    assert sink.send(batch_of(synthetic(3))).outcomes == [Outcome.DELIVERED] * 3
    assert len(hec.events) == 3


@pytest.mark.parametrize("problem", ["wrong", "disabled", "missing"])
def test_token_problems_stop_the_sink_naming_the_setting_never_the_token(hec, problem, caplog):
    caplog.set_level("DEBUG")
    token = TOKEN
    if problem == "wrong":
        hec.token = "99999999-0000-0000-0000-000000000000"
    elif problem == "disabled":
        hec.token_disabled = True
    else:
        hec.fail(Fault(status=401, body=b'{"text":"Token is required","code":2}'))
    with pytest.raises(SinkFailure) as failure:
        make_sink(hec).send(batch_of(synthetic(1)))
    message = str(failure.value)
    assert "sinks.splunk.hec_token" in message
    assert {"wrong": "code 4", "disabled": "code 1", "missing": "code 2"}[problem] in message
    assert token not in message and token not in caplog.text
    assert hec.events == []


def test_an_index_the_token_may_not_write_stops_the_sink(hec):
    with pytest.raises(SinkFailure, match=r"code 7.*sinks\.splunk\.index \(audit\)"):
        make_sink(hec, index="audit").send(batch_of(synthetic(2)))


def test_a_refused_event_goes_to_dead_letters_and_the_rest_is_resent(hec):
    batch = batch_of(synthetic(5))
    hec.refuse_ids = {batch.ids[2]}
    sink = make_sink(hec)
    report = sink.send(batch)
    assert report.outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.REJECTED, Outcome.RETRY, Outcome.RETRY]
    assert "code 6" in report.reasons[2]
    rest = batch.take(report.indices(Outcome.RETRY))
    assert sink.send(rest).outcomes == [Outcome.DELIVERED] * 4
    assert [e["event"]["id"] for e in hec.events] == [i for i in batch.ids if i != batch.ids[2]]


def test_with_acknowledgement_events_count_only_once_indexed():
    with SplunkHec(token=TOKEN, use_ack=True, ack_after_polls=3, max_content_length=10_000) as hec:
        sink = make_sink(hec, use_ack=True, max_request_bytes=10_000)
        report = sink.send(batch_of(synthetic(100)))
        assert report.outcomes == [Outcome.DELIVERED] * 100
        posts = [r for r in hec.requests if r.path == "/services/collector/event"]
        polls = [r for r in hec.requests if r.path == "/services/collector/ack"]
        assert len(posts) >= 3 and len(polls) == 3  # the batch's requests first, then their acks together
        channel = posts[0].headers["x-splunk-request-channel"]
        assert all(r.headers["x-splunk-request-channel"] == channel for r in polls)
        assert json.loads(polls[0].body) == {"acks": list(range(len(posts)))}
        assert hec.requests.index(polls[0]) == len(posts)


def test_an_acknowledgement_that_never_comes_means_retry():
    with SplunkHec(token=TOKEN, use_ack=True, ack_after_polls=None) as hec:
        report = make_sink(hec, use_ack=True, ack_timeout_seconds=0.5).send(batch_of(synthetic(2)))
    assert report.outcomes == [Outcome.RETRY] * 2
    assert "ack_timeout_seconds" in report.reasons[0]


def test_acknowledgement_mismatches_name_use_ack():
    with SplunkHec(token=TOKEN, use_ack=True) as hec, pytest.raises(SinkFailure, match=r"code 10.*use_ack: true"):
        make_sink(hec).send(batch_of(synthetic(1)))
    with SplunkHec(token=TOKEN, use_ack=False) as hec:
        hec.fail(Fault(status=400, body=b'{"text":"ACK is disabled","code":14}'))
        with pytest.raises(SinkFailure, match=r"code 14.*use_ack: false"):
            make_sink(hec, use_ack=True).send(batch_of(synthetic(1)))


def test_config_normalises_the_url_and_names_bad_keys():
    sink = SplunkSink.from_config({"hec_url": "https://splunk.example.com:8088/services/collector/event", "hec_token": "t"})
    assert sink.config.hec_url == "https://splunk.example.com:8088"
    with pytest.raises(ConfigError, match=r"sinks\.splunk\.hec_url"):
        SplunkSink.from_config({"hec_url": "splunk.example.com:8088", "hec_token": "t"})
    with pytest.raises(ConfigError, match=r"sinks\.splunk\.hec_token"):
        SplunkSink.from_config({"hec_url": "https://splunk.example.com:8088"})
    with pytest.raises(ConfigError, match=r"sinks\.splunk\.indexx: unknown key"):
        SplunkSink.from_config({"hec_url": "https://s:8088", "hec_token": "t", "indexx": "x"})


@pytest.mark.skipif(not os.environ.get("AUDIT_TEST_SPLUNK_URL"), reason="set AUDIT_TEST_SPLUNK_URL and AUDIT_TEST_SPLUNK_TOKEN to test a real HEC")
def test_real_splunk_hec_accepts_a_batch():
    raw = {
        "hec_url": os.environ["AUDIT_TEST_SPLUNK_URL"],
        "hec_token": os.environ["AUDIT_TEST_SPLUNK_TOKEN"],
        "use_ack": os.environ.get("AUDIT_TEST_SPLUNK_ACK", "") == "1",
        "tls_verify": os.environ.get("AUDIT_TEST_SPLUNK_TLS_VERIFY", "1") == "1",
    }
    if os.environ.get("AUDIT_TEST_SPLUNK_INDEX"):
        raw["index"] = os.environ["AUDIT_TEST_SPLUNK_INDEX"]
    sink = SplunkSink.from_config(raw)
    try:
        report = sink.send(batch_of(synthetic(5)))
    finally:
        sink.close()
    assert report.outcomes == [Outcome.DELIVERED] * 5
