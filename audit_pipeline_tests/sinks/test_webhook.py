"""Signed webhooks against the stand-in receiver: Standard Webhooks signatures, filters, faults."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import httpx
import pytest

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.sinks.base import Outcome, SinkFailure
from audit_pipeline.sinks.webhook import WebhookSink, webhook_id
from audit_pipeline_tests.sinks.events import batch_of, synthetic
from audit_pipeline_tests.standins.receiver import Fault
from audit_pipeline_tests.standins.webhook import WebhookReceiver

SECRET = "hmac-secret-for-tests-0123456789"
WEBHOOKS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "sinks" / "webhooks.md"


@pytest.fixture
def receiver():
    with WebhookReceiver(secret=SECRET) as server:
        yield server


def make_sink(receiver: WebhookReceiver, **overrides) -> WebhookSink:
    raw = {
        "name": "SIEM Audit Forward",
        "url": receiver.endpoint,
        "events": ["audit.*"],
        "secret": SECRET,
        "headers": {"X-Source": "hellojohn", "X-Environment": "production"},
        **overrides,
    }
    return WebhookSink.from_config(raw, "sinks.webhooks[0]")


def test_one_signed_post_per_event_with_the_event_as_body(receiver):
    batch = batch_of(synthetic(5))
    sink = make_sink(receiver)
    assert sink.name == "webhook:SIEM Audit Forward"
    report = sink.send(batch)
    assert report.outcomes == [Outcome.DELIVERED] * 5
    assert receiver.wire_errors == []
    assert [r.body for r in receiver.deliveries] == [batch.line(i) for i in range(5)]
    for n, request in enumerate(receiver.deliveries):
        assert request.headers["webhook-id"] == batch.ids[n]
        assert request.headers["webhook-signature"].startswith("v1,")
        assert (request.headers["x-source"], request.headers["x-environment"]) == ("hellojohn", "production")
        assert request.headers["content-type"] == "application/json"


def test_signature_matches_the_standard_webhooks_reference_library(receiver):
    from standardwebhooks.webhooks import Webhook

    whsec = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    receiver.secret = whsec
    make_sink(receiver, secret=whsec).send(batch_of(synthetic(1)))
    (request,) = receiver.deliveries
    assert Webhook(whsec).verify(request.body, request.headers) == json.loads(request.body)


def test_a_plain_secret_signs_with_its_utf8_bytes(receiver):
    import hashlib
    import hmac

    make_sink(receiver).send(batch_of(synthetic(1)))
    (request,) = receiver.deliveries
    h = request.headers
    digest = hmac.new(SECRET.encode(), f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + request.body, hashlib.sha256).digest()
    assert h["webhook-signature"] == "v1," + base64.b64encode(digest).decode()


def test_during_a_rotation_every_secret_signs(receiver):
    old, new = "old-secret-value-1", "whsec_" + base64.b64encode(b"new-secret-bytes-xyz-0123").decode()
    with WebhookReceiver(secret=old) as before, WebhookReceiver(secret=new) as after:
        for server in (before, after):
            sink = make_sink(server, secret=[old, new])
            assert sink.send(batch_of(synthetic(2))).outcomes == [Outcome.DELIVERED] * 2
            assert len(server.deliveries[0].headers["webhook-signature"].split(" ")) == 2
            assert server.wire_errors == []


def test_event_patterns_select_exactly_the_matching_events(receiver):
    events = synthetic(200)
    batch = batch_of(events)
    sink = make_sink(receiver, events=["audit.user.*", "audit.session.revoked"])
    assert sink.accepts("user.login") and sink.accepts("session.revoked")
    assert not sink.accepts("org.member_added") and not sink.accepts("session.revoked_all")
    report = sink.send(batch)
    assert report.outcomes == [Outcome.DELIVERED] * 200
    wanted = [e["id"] for e in events if e["type"].startswith("user.") or e["type"] == "session.revoked"]
    assert 0 < len(wanted) < 200
    assert [e["id"] for e in receiver.events] == wanted


def test_a_failure_is_retried_with_the_same_id_and_later_events_wait(receiver):
    receiver.fail(Fault(status=503, headers={"Retry-After": "4"}))
    batch = batch_of(synthetic(3))
    sink = make_sink(receiver)
    first = sink.send(batch)
    assert first.outcomes == [Outcome.RETRY] * 3 and first.retry_after == 4
    assert len(receiver.requests) == 1  # events 2 and 3 were not sent ahead of event 1
    assert sink.send(batch).outcomes == [Outcome.DELIVERED] * 3
    assert receiver.requests[0].headers["webhook-id"] == receiver.requests[1].headers["webhook-id"] == batch.ids[0]
    assert [e["id"] for e in receiver.events] == batch.ids


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=429, headers={"Retry-After": "1"}),
        Fault(status=408),
        Fault(status=500),
        Fault(status=502),
        Fault(status=302, headers={"Location": "https://elsewhere.example/"}),
        Fault(disconnect=True),
    ],
)
def test_retryable_answers(receiver, fault):
    receiver.fail(fault)
    sink = make_sink(receiver)
    assert sink.send(batch_of(synthetic(1))).outcomes == [Outcome.RETRY]
    assert sink.send(batch_of(synthetic(1))).outcomes == [Outcome.DELIVERED]
    assert len(receiver.requests) == 2  # a redirect is not followed


def test_a_timeout_is_retried(receiver):
    receiver.fail(Fault(delay=1.5))
    report = make_sink(receiver, timeout_seconds=0.5).send(batch_of(synthetic(1)))
    assert report.outcomes == [Outcome.RETRY] and "no answer within 0.5 s" in report.reasons[0]
    assert receiver.endpoint not in report.reasons[0]


def test_other_client_errors_dead_letter_that_event_and_go_on(receiver):
    batch = batch_of(synthetic(3))
    receiver.refuse_ids = {batch.ids[1]}
    report = make_sink(receiver).send(batch)
    assert report.outcomes == [Outcome.DELIVERED, Outcome.REJECTED, Outcome.DELIVERED]
    assert "422" in report.reasons[1]


def test_410_gone_disables_the_webhook(receiver):
    receiver.gone = True
    sink = make_sink(receiver)
    with pytest.raises(SinkFailure, match=r"'SIEM Audit Forward' answered 410 Gone.*disabled.*sinks\.webhooks"):
        sink.send(batch_of(synthetic(2)))
    with pytest.raises(SinkFailure, match="410 Gone"):
        sink.send(batch_of(synthetic(2)))
    assert len(receiver.requests) == 1  # nothing more was sent once the receiver said Gone


def test_a_receiver_refusing_the_signature_stops_the_sink_without_showing_the_secret(receiver, caplog):
    caplog.set_level("DEBUG")
    receiver.secret = "a-different-secret"
    with pytest.raises(SinkFailure) as failure:
        make_sink(receiver).send(batch_of(synthetic(1)))
    assert "401" in str(failure.value) and "secret" in str(failure.value)
    assert SECRET not in str(failure.value) and SECRET not in caplog.text


def test_batch_mode_posts_signed_arrays():
    with WebhookReceiver(secret=SECRET, batch=True) as receiver:
        batch = batch_of(synthetic(25))
        report = make_sink(receiver, batch=True, batch_size=10).send(batch)
        assert report.outcomes == [Outcome.DELIVERED] * 25
        assert [len(json.loads(r.body)) for r in receiver.deliveries] == [10, 10, 5]
        assert all(r.headers["webhook-id"].startswith("batch_") for r in receiver.deliveries)
        assert [e["id"] for e in receiver.events] == batch.ids
        assert receiver.wire_errors == []


def test_ids_the_spec_forbids_in_webhook_id_are_encoded_reversibly(receiver):
    events = synthetic(2)
    events[0]["id"] = "alog.2024 01/ü"
    make_sink(receiver).send(batch_of(events))
    assert receiver.wire_errors == []
    sent = receiver.deliveries[0].headers["webhook-id"]
    assert "." not in sent and sent.isascii() and " " not in sent
    assert webhook_id("alog_01HV3K9Q") == "alog_01HV3K9Q"
    from urllib.parse import unquote

    assert unquote(sent) == "alog.2024 01/ü"


@pytest.mark.parametrize(
    ("override", "key", "text"),
    [
        ({"events": ["user.*"]}, "events", "can never match"),
        ({"secret": "whsec_not base64!"}, "secret", "not base64"),
        ({"secret": ""}, "secret", "empty"),
        ({"headers": {"webhook-signature": "x"}}, "headers", "set by the pipeline"),
        ({"url": "siem.example.com/ingest"}, "url", "http(s)://"),
        ({"name": " "}, "name", "non-empty"),
    ],
)
def test_bad_configuration_names_the_key_and_never_echoes_the_secret(receiver, override, key, text):
    with pytest.raises(ConfigError) as error:
        make_sink(receiver, **override)
    assert f"sinks.webhooks[0].{key}" in str(error.value) and text in str(error.value)
    assert "not base64!" not in str(error.value)


def test_the_documented_receiver_snippet_verifies_a_real_signed_request(receiver):
    """The verification code shown in docs/sinks/webhooks.md, run as printed, against a request the sink really sent."""
    text = WEBHOOKS_PAGE.read_text(encoding="utf-8")
    section = text[text.index("## Verifying webhook signatures") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S)
    assert snippet, "docs/sinks/webhooks.md lost its webhook verification snippet"
    namespace: dict = {}
    exec(compile(snippet.group(1), "docs/sinks/webhooks.md", "exec"), namespace)
    verify = namespace["verify"]

    make_sink(receiver).send(batch_of(synthetic(1)))
    (request,) = receiver.deliveries
    headers = httpx.Headers(request.headers)
    assert verify(SECRET, headers, request.body) is True
    assert verify(SECRET, headers, request.body.replace(b'"', b"'", 1)) is False  # tampered body
    assert verify("another-secret", headers, request.body) is False
    stale = httpx.Headers({**request.headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 3600)})
    assert verify(SECRET, stale, request.body) is False  # replayed an hour later
