"""The places an alert goes: a Slack incoming webhook, a Standard Webhooks receiver, an SMTP server.

Each send raises :class:`AlertDeliveryError` with a one-line reason that names the channel's settings and never a
secret (the Slack URL, the webhook secret and the SMTP password are registered secrets, and only the setting's
name is ever printed).
"""

from __future__ import annotations

import smtplib
import ssl
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage

import httpx

from audit_pipeline.alerts.condition import Message
from audit_pipeline.config.sections.alerts import AlertSettings, EmailChannel, SlackChannel, WebhookChannel
from audit_pipeline.config.sections.webhook import _key
from audit_pipeline.core.redaction import redact
from audit_pipeline.sinks.webhook import sign

TIMEOUT = 15.0


class AlertDeliveryError(Exception):
    """A channel did not take an alert; the alert stays unsent and is tried again on the next evaluation."""


#: name of the channel (as in the settings) and how to send to it
Sender = tuple[str, Callable[[Message], None]]


def _post(where: str, url: str, body: bytes, headers: dict[str, str]) -> None:
    try:
        response = httpx.post(url, content=body, headers={"content-type": "application/json", **headers}, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        raise AlertDeliveryError(f"{where}: could not reach the receiver ({type(exc).__name__}); check the URL and the network") from None
    if response.status_code >= 300:
        raise AlertDeliveryError(f"{where}: the receiver answered HTTP {response.status_code}; check the URL and its credentials")


def slack_sender(channel: SlackChannel) -> Callable[[Message], None]:
    def send(message: Message) -> None:
        import json

        _post("alerts.slack", channel.webhook_url.get_secret_value(), json.dumps({"text": message.text}).encode("utf-8"), {})

    return send


def webhook_sender(channel: WebhookChannel, clock: Callable[[], float] = time.time) -> Callable[[Message], None]:
    key = _key(channel.secret.get_secret_value(), "secret")

    def send(message: Message) -> None:
        body = message.as_json()
        msg_id = f"alert_{uuid.uuid4().hex}"
        timestamp = int(clock())
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": sign([key], msg_id, timestamp, body)}
        _post("alerts.webhook", channel.url, body, headers)

    return send


def email_sender(channel: EmailChannel) -> Callable[[Message], None]:
    def send(message: Message) -> None:
        mail = EmailMessage()
        mail["Subject"] = message.subject
        mail["From"] = channel.sender
        mail["To"] = ", ".join(channel.to)
        mail.set_content(message.text + "\n")
        context = ssl.create_default_context(cafile=channel.ca_file)
        try:
            smtp: smtplib.SMTP
            if channel.security == "tls":
                smtp = smtplib.SMTP_SSL(channel.host, channel.port, timeout=TIMEOUT, context=context)
            else:
                smtp = smtplib.SMTP(channel.host, channel.port, timeout=TIMEOUT)
            with smtp:
                if channel.security == "starttls":
                    smtp.starttls(context=context)
                if channel.username is not None:
                    smtp.login(channel.username, channel.password.get_secret_value() if channel.password else "")
                smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            reason = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise AlertDeliveryError(
                f"alerts.email: {channel.host}:{channel.port} did not take the message ({reason}); check host, port, security and credentials"
            ) from None

    return send


def senders(settings: AlertSettings) -> list[Sender]:
    """One sender per configured channel, named as in the settings."""
    found: list[Sender] = []
    if settings.slack is not None:
        found.append(("slack", slack_sender(settings.slack)))
    if settings.webhook is not None:
        found.append(("webhook", webhook_sender(settings.webhook)))
    if settings.email is not None:
        found.append(("email", email_sender(settings.email)))
    return found
