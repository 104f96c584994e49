"""Secrets of the Datadog, Splunk and webhook sinks stay out of reprs, configuration errors and failures."""

from __future__ import annotations

import logging

import pytest

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.sinks.base import Outcome, SinkFailure
from audit_pipeline.sinks.datadog import DatadogSink
from audit_pipeline.sinks.splunk import SplunkSink
from audit_pipeline.sinks.webhook import WebhookSink
from audit_pipeline_tests.sinks.events import batch_of, synthetic
from audit_pipeline_tests.standins.receiver import Answer, Receiver, Request

DD_KEY = "dd-secret-key-7f1e2d3c"
HEC_TOKEN = "9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0"
HOOK_SECRET = "hook-secret-q1w2e3r4"
AUTH_HEADER = "Bearer header-secret-z9x8"
ALL = (DD_KEY, HEC_TOKEN, HOOK_SECRET, AUTH_HEADER)


class EchoingServer(Receiver):
    """Answers with everything it was sent, secrets included, as a misbehaving proxy might."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status

    def handle(self, request: Request) -> Answer:
        echoed = " ".join(f"{k}={v}" for k, v in request.headers.items())
        return Answer(self.status, f'{{"text": "{echoed}", "code": 4}}'.encode())


def sinks(url: str):
    return [
        DatadogSink.from_config({"api_key": DD_KEY, "url": url + "/api/v2/logs"}),
        SplunkSink.from_config({"hec_url": url, "hec_token": HEC_TOKEN}),
        WebhookSink.from_config({"name": "n", "url": url + "/hook", "secret": HOOK_SECRET, "headers": {"Authorization": AUTH_HEADER}}),
    ]


@pytest.mark.parametrize("status", [400, 403, 404, 410, 422, 503])
def test_answers_that_echo_the_request_never_bring_a_secret_into_reasons_or_errors(status, caplog):
    caplog.set_level(logging.DEBUG)
    texts = []
    with EchoingServer(status) as server:
        for sink in sinks(server.url):
            try:
                report = sink.send(batch_of(synthetic(2)))
                texts.extend(report.reasons.values())
                assert Outcome.DELIVERED not in report.outcomes
            except SinkFailure as failure:
                texts.append(str(failure))
            finally:
                sink.close()
    assert texts and any("***" in t for t in texts)  # the echoed secret was there, and masked
    for secret in ALL:
        assert all(secret not in t for t in texts)
        assert secret not in caplog.text


def test_reprs_hold_no_secret():
    for sink in sinks("http://127.0.0.1:9"):
        assert all(secret not in repr(sink.config) and secret not in str(sink.config) for secret in ALL)
        sink.close()


@pytest.mark.parametrize(
    ("build", "raw"),
    [
        (DatadogSink.from_config, {"api_key": [DD_KEY], "site": "nowhere"}),
        (SplunkSink.from_config, {"hec_url": HEC_TOKEN, "hec_token": {"t": HEC_TOKEN}}),
        (WebhookSink.from_config, {"name": "n", "url": "u", "secret": [HOOK_SECRET, 5], "headers": {"Bad Header": AUTH_HEADER}}),
    ],
)
def test_configuration_errors_name_keys_but_never_echo_values(build, raw):
    with pytest.raises(ConfigError) as error:
        build(raw, "sinks.x")
    assert "sinks.x." in str(error.value)
    for secret in ALL:
        assert secret not in str(error.value)
