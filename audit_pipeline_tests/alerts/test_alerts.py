"""Alerts reach a real SMTP server (aiosmtpd, STARTTLS), a Slack stand-in and a Standard Webhooks receiver, once
when a failure starts and once when it clears, from real Dagster runs, checks and a sink's real position."""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook

from audit_pipeline.defs.alerts import evaluate_alerts
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.conftest import free_port
from audit_pipeline_tests.standins.receiver import Answer, Receiver, Request

SECRET = "whsec_" + base64.b64encode(b"alert-signing-key-0123456789abcd").decode()


class SlackStandIn(Receiver):
    """Slack's incoming webhooks (https://api.slack.com/messaging/webhooks): POST a JSON body with ``text``; the
    answer is 200 ``ok``, or 400 ``invalid_payload`` / ``no_text``."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def handle(self, request: Request) -> Answer:
        try:
            payload = json.loads(request.body)
        except ValueError:
            return Answer(400, b"invalid_payload")
        if not isinstance(payload, dict) or not payload.get("text"):
            return Answer(400, b"no_text")
        self.texts.append(payload["text"])
        return Answer(200, b"ok")


class SignedReceiver(Receiver):
    """Accepts only bodies whose Standard Webhooks signature verifies (the reference library, not our signer)."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    def handle(self, request: Request) -> Answer:
        try:
            Webhook(SECRET).verify(request.body, request.headers)
        except Exception:
            return Answer(401, b"bad signature")
        self.bodies.append(json.loads(request.body))
        return Answer(204)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def _certificate(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "smtp.pem", tmp / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def channels(tmp_path: Path) -> Iterator[dict[str, Any]]:
    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()
    port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    smtp.start()
    slack, hook = SlackStandIn(), SignedReceiver()
    try:
        yield {
            "mailbox": mailbox,
            "slack": slack,
            "hook": hook,
            "settings": {
                "slack": {"webhook_url": slack.url + "/services/T000/B000/XXXX"},
                "webhook": {"url": hook.url + "/hooks/audit", "secret": SECRET},
                "email": {"host": "127.0.0.1", "port": port, "sender": "audit@example.com", "to": ["oncall@example.com"], "ca_file": str(cert)},
                "ui_url": "https://dagster.example.com",
            },
        }
    finally:
        smtp.stop()
        slack.close()
        hook.close()


def _resource(workdir: Path, alerts: dict[str, Any], **more: Any) -> AuditPipelineResource:
    settings = {"alerts": alerts, "state_url": f"sqlite:///{workdir / 'state.db'}", **more}
    return AuditPipelineResource(settings_json=json.dumps(settings))


FAIL = {"value": True}


@dg.op
def export_step() -> None:
    if FAIL["value"]:
        raise RuntimeError("the bucket refused the upload")


@dg.job(name="daily_export_job")
def fake_export_job() -> None:
    export_step()


def _run(instance: dg.DagsterInstance, fail: bool, partition: str = "2024-01-15") -> None:
    FAIL["value"] = fail
    fake_export_job.execute_in_process(instance=instance, tags={"dagster/partition": partition}, raise_on_error=False)


def test_a_failed_run_alerts_once_on_every_channel_and_resolves_once(channels, workdir: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    audit = _resource(workdir, channels["settings"])
    _run(instance, fail=True)

    sent, failures = evaluate_alerts(instance, audit)
    assert failures == []
    assert sorted(line.split(":")[0] for line in sent) == ["email", "slack", "webhook"]
    assert channels["slack"].texts[0].startswith("[audit_pipeline ALERT] daily_export_job failed for 2024-01-15")
    assert "https://dagster.example.com/runs/" in channels["slack"].texts[0]
    assert channels["hook"].bodies == [
        {
            "type": "audit_pipeline.alert",
            "status": "firing",
            "key": "run:daily_export_job:2024-01-15",
            "title": "daily_export_job failed for 2024-01-15",
            "detail": channels["hook"].bodies[0]["detail"],
            "link": channels["hook"].bodies[0]["link"],
        }
    ]
    (mail,) = channels["mailbox"].messages
    assert mail["Subject"] == "[audit_pipeline ALERT] daily_export_job failed for 2024-01-15"
    assert mail["To"] == "oncall@example.com"

    # Still failing, and failing again: nothing new is said.
    assert evaluate_alerts(instance, audit) == ([], [])
    _run(instance, fail=True)
    assert evaluate_alerts(instance, audit) == ([], [])
    assert len(channels["slack"].texts) == 1

    _run(instance, fail=False)
    sent, _ = evaluate_alerts(instance, audit)
    assert len(sent) == 3
    assert channels["slack"].texts[1].startswith("[audit_pipeline RESOLVED] daily_export_job succeeded for 2024-01-15")
    assert channels["hook"].bodies[1]["status"] == "resolved"
    assert channels["mailbox"].messages[1]["Subject"].startswith("[audit_pipeline RESOLVED]")
    assert evaluate_alerts(instance, audit) == ([], [])


def test_a_channel_that_fails_is_told_later_without_repeating_the_others(channels, workdir: Path) -> None:
    from audit_pipeline_tests.standins.receiver import Fault

    instance = dg.DagsterInstance.ephemeral()
    audit = _resource(workdir, channels["settings"])
    _run(instance, fail=True, partition="2024-02-01")
    channels["hook"].fail(Fault(status=503))
    sent, failures = evaluate_alerts(instance, audit)
    assert sorted(line.split(":")[0] for line in sent) == ["email", "slack"]
    assert failures == ["alerts.webhook: the receiver answered HTTP 503; check the URL and its credentials"]
    sent, failures = evaluate_alerts(instance, audit)
    assert [line.split(":")[0] for line in sent] == ["webhook"] and failures == []
    assert len(channels["slack"].texts) == 1 and len(channels["hook"].bodies) == 1
    assert SECRET not in json.dumps(channels["hook"].bodies)


def test_a_failed_check_alerts_and_its_pass_resolves(channels, workdir: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    audit = _resource(workdir, {"slack": channels["settings"]["slack"], "ui_url": "https://dagster.example.com"})
    passing = {"value": False}

    @dg.asset(name="audit_logs_daily_summary")
    def summary() -> None:
        return None

    @dg.asset_check(asset=summary, name="no_spike")
    def no_spike() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=passing["value"], severity=dg.AssetCheckSeverity.WARN, description="failed logins 412, median 12")

    dg.materialize([summary, no_spike], instance=instance)
    sent, _ = evaluate_alerts(instance, audit)
    assert sent == ["slack: [audit_pipeline ALERT] check no_spike on audit_logs_daily_summary failed (WARN)"]
    assert "failed logins 412, median 12" in channels["slack"].texts[0]
    assert "https://dagster.example.com/assets/audit_logs_daily_summary?view=checks" in channels["slack"].texts[0]
    passing["value"] = True
    dg.materialize([summary, no_spike], instance=instance)
    sent, _ = evaluate_alerts(instance, audit)
    assert sent == ["slack: [audit_pipeline RESOLVED] check no_spike on audit_logs_daily_summary passed (WARN)"]


def test_a_sink_that_stopped_alerts_from_its_real_position(channels, workdir: Path, pg) -> None:
    pg.insert(generate_events(dt.date(2024, 1, 15), 50))
    instance = dg.DagsterInstance.ephemeral()
    hook = channels["hook"]
    audit = _resource(
        workdir,
        {"webhook": channels["settings"]["webhook"], "sink_lag_seconds": 3600, "ui_url": "https://dagster.example.com"},
        source={"type": "postgres", "database_url": pg.readonly_url},
        sinks={"webhooks": [{"name": "siem", "url": hook.url + "/never-called", "secret": SECRET, "start": "earliest"}]},
    )
    sent, failures = evaluate_alerts(instance, audit)
    assert failures == []
    assert len(sent) == 1 and sent[0].startswith("webhook: [audit_pipeline ALERT] sink webhook:siem is ")
    body = hook.bodies[0]
    assert body["key"] == "sink-lag:webhook:siem" and "(50 events undelivered)" in body["title"]
    assert body["link"] == "https://dagster.example.com/assets/audit_logs_in_webhook_siem"
    assert not [r for r in hook.requests if r.path == "/never-called"]
    assert evaluate_alerts(instance, audit) == ([], [])


def test_no_channel_means_no_alert_and_the_sensor_says_why(workdir: Path) -> None:
    from audit_pipeline.defs.alerts import audit_alerts

    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(instance=instance, resources={"audit": _resource(workdir, {})})
    result = audit_alerts(context)
    assert isinstance(result, dg.SkipReason)
    assert "no alert channel configured" in (result.skip_message or "")


def test_a_bad_alert_setting_is_one_line(workdir: Path) -> None:
    from audit_pipeline.config.settings import settings_from_mapping
    from audit_pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"alerts": {"email": {"host": "smtp", "sender": "a@b", "to": ["nobody"]}}}, "audit_pipeline.yaml")
    assert "alerts.email.to" in str(caught.value) and "'nobody' is not an e-mail address" in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1
