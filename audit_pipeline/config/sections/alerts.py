"""``alerts:``: where an operator is told that something needs them (Slack, a signed webhook, e-mail) and when.

Every channel is optional; with none configured nothing is sent and the alert sensor stays idle. Secrets (the Slack
URL, the webhook secret, the SMTP password) should be ``${VAR}`` references.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from audit_pipeline.config.sections.urls import require_http_url
from audit_pipeline.config.sections.webhook import _key


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackChannel(_Channel):
    """A Slack incoming webhook (https://api.slack.com/messaging/webhooks)."""

    #: The incoming webhook's URL (a secret: anyone holding it can post to the channel).
    webhook_url: SecretStr

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        require_http_url(value.get_secret_value(), ", e.g. ${SLACK_WEBHOOK_URL}")
        return value


class WebhookChannel(_Channel):
    """A generic receiver, signed the Standard Webhooks way like the webhook sink."""

    url: str
    #: ``whsec_…`` (base64), the same form as ``sinks.webhooks[].secret``.
    secret: SecretStr

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return require_http_url(value, ", e.g. https://ops.example.com/hooks/audit")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        _key(value.get_secret_value(), "secret")
        return value


class EmailChannel(_Channel):
    """SMTP, with STARTTLS by default."""

    host: str
    port: int = Field(default=587, ge=1, le=65_535)
    #: ``starttls`` (port 587), ``tls`` (implicit TLS, port 465) or ``none`` (a relay on a trusted network only).
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str
    to: tuple[str, ...]
    #: A CA bundle to verify the server with (default: the system's).
    ca_file: str | None = None

    @field_validator("to")
    @classmethod
    def _recipients(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one recipient, e.g. [security-oncall@example.com]")
        for address in value:
            if "@" not in address:
                raise ValueError(f"{address!r} is not an e-mail address")
        return value


class AlertSettings(BaseModel):
    """What is watched (failed runs, failed checks, sink lag and stalls, dead letters, spikes) and where alerts go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slack: SlackChannel | None = None
    webhook: WebhookChannel | None = None
    email: EmailChannel | None = None
    #: The Dagster UI's address, for the link in each alert.
    ui_url: str = "http://localhost:3000"
    #: A sink whose oldest undelivered event is older than this many seconds is lagging (or has stopped).
    sink_lag_seconds: float = Field(default=900.0, gt=0)
    #: A sink with at least this many dead letters pending has a backlog someone must look at.
    dead_letters: int = Field(default=1, ge=1)
    #: The jobs whose failed runs alert (each resolves on the next successful run of the same job and partition).
    jobs: tuple[str, ...] = ("daily_export_job", "retention_job", "verify_job")

    @property
    def enabled(self) -> bool:
        return any(channel is not None for channel in (self.slack, self.webhook, self.email))
