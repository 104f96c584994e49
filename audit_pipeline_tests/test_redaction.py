"""The redaction every message passes: whole secrets masked before any cut, URLs and echoed headers cleaned."""

from __future__ import annotations

import httpx

from audit_pipeline.core.errors import AuditPipelineError
from audit_pipeline.core.redaction import excerpt, redact, register_secret
from audit_pipeline.sinks import http_client
from audit_pipeline.sinks.base import DeliveryReport, Outcome, SinkFailure

SECRET = "DDKEY-SUPERSECRET-0123456789abcd"


def test_a_secret_straddling_the_cut_leaves_no_part_behind():
    register_secret(SECRET)
    body = "x" * 190 + SECRET + " and more"
    response = httpx.Response(500, text=body)
    shown = http_client.excerpt(response)
    assert SECRET[:8] not in shown and "DDKEY" not in shown
    assert len(shown) <= 200
    assert "DDKEY" not in excerpt(body, 195)


def test_urls_lose_their_passwords_and_credential_parameters():
    text = "POST https://user:pa55word-xyz@siem.example/api/ingest?token=URLTOKEN-SUPERSECRET-4242&page=2 failed"
    shown = redact(text)
    assert "pa55word" not in shown and "URLTOKEN" not in shown
    assert "https://user:***@siem.example/api/ingest?token=***&page=2" in shown


def test_echoed_headers_are_masked_even_when_not_configured():
    shown = redact('{"Authorization": "Splunk 0f1e2d3c-4b5a", "DD-API-KEY": "abcdef123456", "X-Auth-Token": "zz9988776655"}')
    for part in ("0f1e2d3c", "abcdef123456", "zz9988776655"):
        assert part not in shown


def test_errors_reasons_and_dead_letter_reasons_are_redacted_when_made():
    register_secret("HDRTOKEN-SUPERSECRET-abcdefghijkl")
    assert "HDRTOKEN" not in str(AuditPipelineError("failed: HDRTOKEN-SUPERSECRET-abcdefghijkl"))
    assert "HDRTOKEN" not in str(SinkFailure("refused HDRTOKEN-SUPERSECRET-abcdefghijkl"))
    report = DeliveryReport([Outcome.REJECTED], {0: "echo HDRTOKEN-SUPERSECRET-abcdefghijkl"})
    assert "HDRTOKEN" not in report.reasons[0]
    http_client.mark(report, [0], Outcome.RETRY, "again HDRTOKEN-SUPERSECRET-abcdefghijkl")
    assert "HDRTOKEN" not in report.reasons[0]


def test_plain_values_are_never_registered():
    register_secret("true")
    register_secret("8080")
    assert redact("gzip true on port 8080") == "gzip true on port 8080"


def test_a_database_role_name_is_not_a_secret_but_tokens_and_passwords_are():
    register_secret("postgresql://exporter@127.0.0.1:5432/hellojohn")
    register_secret("https://URLUSERTOKEN-0123456789@hooks.example/in")
    register_secret("postgresql://exporter:DBPASS-SUPERSECRET-99@127.0.0.1:5432/hellojohn")
    shown = redact("cannot connect to PostgreSQL postgresql://exporter@127.0.0.1:5432/hellojohn; DBPASS-SUPERSECRET-99 URLUSERTOKEN-0123456789")
    assert shown.startswith("cannot connect to PostgreSQL postgresql://exporter@127.0.0.1:5432/hellojohn")
    assert "DBPASS" not in shown and "URLUSERTOKEN" not in shown
