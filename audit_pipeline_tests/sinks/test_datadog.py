"""The Datadog Logs sink against the stand-in intake: wire format, limits, faults, old events."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os

import pytest

from audit_pipeline.config.sections.datadog import SITES, DatadogSettings
from audit_pipeline.config.settings import parse_section
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.sinks.base import Outcome, SinkFailure
from audit_pipeline.sinks.datadog import DatadogSink
from audit_pipeline_tests.sinks.events import batch_of, recent
from audit_pipeline_tests.standins.datadog import DatadogIntake
from audit_pipeline_tests.standins.receiver import Fault

KEY = "dd-standin-api-key-0123456789abcdef"


@pytest.fixture
def intake():
    with DatadogIntake(api_key=KEY) as server:
        yield server


def make_sink(intake: DatadogIntake, **overrides) -> DatadogSink:
    config = {"api_key": KEY, "url": intake.intake_url, "hostname": "exporter-1", "tags": ["env:test"], **overrides}
    return DatadogSink(parse_section(DatadogSettings, config, "sinks.datadog"))


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_entries_carry_reserved_attributes_and_every_field_exactly(intake):
    events = recent(40, now())
    events[0]["metadata"] = {"big": 123456789012345678901234567890, "text": 'zoë \u2028 "q"', "n": 1.50}
    batch = batch_of(events)
    sink = make_sink(intake)
    report = sink.send(batch)
    assert report.outcomes == [Outcome.DELIVERED] * 40
    assert intake.wire_errors == [] and intake.dropped == [] and intake.truncated == []
    (request,) = intake.requests
    assert request.headers["dd-api-key"] == KEY
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == "application/json"
    logs = json.loads(gzip.decompress(request.body), parse_float=str, parse_int=str)
    for n, log in enumerate(logs):
        expected = json.loads(batch.line(n), parse_float=str, parse_int=str)
        assert {k: log[k] for k in expected} == expected  # every column, byte-exact values
        assert log["ddsource"] == "hellojohn-audit" and log["service"] == "hellojohn" and log["hostname"] == "exporter-1"
        assert log["ddtags"] == "env:test"
        created = events[n]["created_at"] - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        assert int(log["timestamp"]) == created // dt.timedelta(milliseconds=1)
        assert log["status"] == ("warn" if expected["result"] == "failure" else "info")
        assert log["message"].startswith(f"{expected['type']} {expected['result']} by ")
    assert logs[0]["metadata"]["big"] == "123456789012345678901234567890"


def test_requests_stay_within_1000_entries(intake):
    batch = batch_of(recent(2_500, now()))
    report = make_sink(intake).send(batch)
    assert report.indices(Outcome.DELIVERED) == list(range(2_500))
    sizes = [len(json.loads(gzip.decompress(r.body))) for r in intake.requests]
    assert sizes == [1_000, 1_000, 500]
    assert [log["id"] for log in intake.logs] == batch.ids


def test_requests_stay_within_5_mb_uncompressed(intake):
    events = recent(12, now())
    for n, event in enumerate(events):
        event["metadata"] = {"blob": f"{n:x}" * 450_000}  # about 0.45-0.9 MB per event
    batch = batch_of(events)
    report = make_sink(intake).send(batch)
    assert report.outcomes == [Outcome.DELIVERED] * 12
    assert len(intake.requests) >= 2
    assert all(len(gzip.decompress(r.body)) <= 5_000_000 for r in intake.requests)
    assert intake.wire_errors == [] and intake.truncated == []
    assert [log["id"] for log in intake.logs] == batch.ids


def test_an_event_over_1_mb_is_delivered_cut_to_fit_and_reported_for_the_dead_letters(intake):
    events = recent(3, now())
    events[1]["metadata"] = {"blob": "x" * 1_100_000, "small": "kept"}
    report = make_sink(intake).send(batch_of(events))
    assert report.outcomes == [Outcome.DELIVERED] * 3
    assert list(report.truncated) == [1] and "1 MB per-log limit" in report.truncated[1] and "metadata.blob" in report.truncated[1]
    assert [log["id"] for log in intake.logs] == [e["id"] for e in events]
    assert intake.truncated == []  # Datadog had nothing to cut
    cut = intake.logs[1]
    assert cut["truncated"] is True and cut["truncated_fields"] == ["metadata.blob"] and cut["metadata"]["small"] == "kept"
    assert "truncated" not in intake.logs[0]


def test_413_splits_the_request_until_it_fits(intake):
    intake.fail(Fault(status=413), Fault(status=413))
    batch = batch_of(recent(8, now()))
    report = make_sink(intake).send(batch)
    assert report.outcomes == [Outcome.DELIVERED] * 8
    sent = [len(json.loads(gzip.decompress(r.body))) for r in intake.requests]
    assert sent == [8, 4, 2, 2, 4]  # 413 for 8, then for the first 4; halves go through
    assert [log["id"] for log in intake.logs] == batch.ids


def test_429_asks_for_a_retry_with_the_servers_delay_and_sends_nothing_more(intake):
    intake.fail(Fault(status=429, headers={"Retry-After": "7"}))
    batch = batch_of(recent(2_100, now()))
    sink = make_sink(intake)
    report = sink.send(batch)
    assert report.outcomes == [Outcome.RETRY] * 2_100
    assert report.retry_after == 7
    assert len(intake.requests) == 1  # later requests wait for the first
    again = sink.send(batch)
    assert again.outcomes == [Outcome.DELIVERED] * 2_100
    assert [log["id"] for log in intake.logs] == batch.ids


@pytest.mark.parametrize("fault", [Fault(status=500), Fault(status=503), Fault(status=408), Fault(disconnect=True)])
def test_server_errors_and_lost_connections_are_retried(intake, fault):
    intake.fail(fault)
    batch = batch_of(recent(5, now()))
    sink = make_sink(intake)
    first = sink.send(batch)
    assert first.outcomes == [Outcome.RETRY] * 5 and first.reasons[0]
    assert sink.send(batch).outcomes == [Outcome.DELIVERED] * 5
    assert [log["id"] for log in intake.logs] == batch.ids


def test_a_timeout_is_retried(intake):
    intake.fail(Fault(delay=1.5))
    sink = make_sink(intake, timeout_seconds=0.5)
    report = sink.send(batch_of(recent(2, now())))
    assert report.outcomes == [Outcome.RETRY] * 2
    assert "no answer within 0.5 s" in report.reasons[0]


@pytest.mark.parametrize(
    ("fault", "setting"),
    [
        (Fault(status=401, body=b'{"errors":["Unauthorized"]}'), "sinks.datadog.api_key"),  # e.g. a proxy dropped the header
        (None, "sinks.datadog.api_key"),  # the intake knows another key: a real 403
        (Fault(status=400, body=b'{"errors":["bad payload"]}'), "sinks.datadog.url"),
    ],
)
def test_refusals_stop_the_sink_naming_the_setting_never_the_key(fault, setting, caplog):
    caplog.set_level("DEBUG")
    with DatadogIntake(api_key="another-key") as other:
        if fault:
            other.fail(fault)
        sink = make_sink(other)
        with pytest.raises(SinkFailure) as failure:
            sink.send(batch_of(recent(1, now())))
        status = fault.status if fault else 403
        assert other.requests[0].answered == status
    message = str(failure.value)
    assert str(status) in message and setting in message
    assert KEY not in message and KEY not in caplog.text


def test_old_events_keep_created_at_and_arrive_tagged_late_instead_of_being_dropped(intake):
    current = now()
    events = recent(3, current)
    events[0]["created_at"] = current - dt.timedelta(days=3)
    events[1]["created_at"] = current - dt.timedelta(hours=17, minutes=55)  # inside 18 h, but too close to the edge
    report = make_sink(intake).send(batch_of(events))
    assert report.outcomes == [Outcome.DELIVERED] * 3
    assert intake.dropped == []  # an 18 h+ timestamp would have been accepted and then dropped
    by_id = {log["id"]: log for log in intake.logs}
    for late in events[:2]:
        log = by_id[late["id"]]
        assert "timestamp" not in log and log["ddtags"] == "env:test,late:true"
        assert log["created_at"] == late["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert "timestamp" in by_id[events[2]["id"]] and by_id[events[2]["id"]]["ddtags"] == "env:test"


def test_the_stand_in_drops_what_datadog_drops(intake):
    """The control for the test above: an entry with an old timestamp never shows up."""
    import httpx

    old = int((now() - dt.timedelta(hours=19)).timestamp() * 1000)
    body = gzip.compress(json.dumps([{"message": "m", "timestamp": old}]).encode())
    answer = httpx.post(intake.intake_url, content=body, headers={"DD-API-KEY": KEY, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert answer.status_code == 202 and intake.logs == [] and len(intake.dropped) == 1


def test_old_events_may_go_to_dead_letters_instead(intake):
    current = now()
    events = recent(2, current)
    events[0]["created_at"] = current - dt.timedelta(days=2)
    events[1]["created_at"] = current + dt.timedelta(hours=3)
    report = make_sink(intake, late_events="dead_letter").send(batch_of(events))
    assert report.outcomes == [Outcome.REJECTED, Outcome.REJECTED]
    assert "18 h" in report.reasons[0] and "late_events" in report.reasons[0]
    assert intake.requests == []


def test_future_events_arrive_tagged(intake):
    current = now()
    events = recent(1, current)
    events[0]["created_at"] = current + dt.timedelta(hours=5)
    make_sink(intake).send(batch_of(events))
    (log,) = intake.logs
    assert "timestamp" not in log and log["ddtags"] == "env:test,future:true"


@pytest.mark.parametrize("site", sorted(SITES))
def test_each_site_posts_to_its_documented_intake_host(site):
    config = parse_section(DatadogSettings, {"api_key": "k", "site": site}, "sinks.datadog")
    assert config.intake_url() == f"https://http-intake.logs.{site}/api/v2/logs"


def test_site_aliases_and_errors():
    assert parse_section(DatadogSettings, {"api_key": "k", "site": "app.datadoghq.eu"}, "x").site == "datadoghq.eu"
    with pytest.raises(ConfigError, match=r"sinks\.datadog\.site.*unknown Datadog site 'datadoghq.de'"):
        parse_section(DatadogSettings, {"api_key": "k", "site": "datadoghq.de"}, "sinks.datadog")
    with pytest.raises(ConfigError, match=r"sinks\.datadog\.api_key"):
        parse_section(DatadogSettings, {"site": "datadoghq.com"}, "sinks.datadog")
    with pytest.raises(ConfigError, match=r"sinks\.datadog\.tags"):
        parse_section(DatadogSettings, {"api_key": "k", "tags": ["a,b"]}, "sinks.datadog")
    assert parse_section(DatadogSettings, {"api_key": "k", "tags": {"env": "prod", "team": "sec"}}, "x").tags == ["env:prod", "team:sec"]


@pytest.mark.skipif(not os.environ.get("AUDIT_TEST_DATADOG_URL"), reason="set AUDIT_TEST_DATADOG_URL and AUDIT_TEST_DATADOG_API_KEY to test a real intake")
def test_real_datadog_intake_accepts_a_batch():
    config = parse_section(
        DatadogSettings,
        {"api_key": os.environ["AUDIT_TEST_DATADOG_API_KEY"], "url": os.environ["AUDIT_TEST_DATADOG_URL"], "tags": ["audit_pipeline:test"]},
        "sinks.datadog",
    )
    sink = DatadogSink(config)
    try:
        report = sink.send(batch_of(recent(5, now())))
    finally:
        sink.close()
    assert report.outcomes == [Outcome.DELIVERED] * 5
