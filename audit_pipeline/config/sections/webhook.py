"""``sinks.webhooks``: one entry per receiver, with its URL, secrets, headers and event filter, checked at load."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from audit_pipeline.config.sections.ocsf import OcsfSettings
from audit_pipeline.config.sections.urls import require_http_url

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an HTTP header name (RFC 9110 token)
_OURS = {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "content-length", "host", "user-agent"}


class WebhookSettings(BaseModel):
    """One entry of ``sinks.webhooks``, with the fields HelloJohn's webhook registration uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    url: str
    #: Glob patterns over ``audit.<type>``, e.g. ``audit.*`` or ``audit.user.*``.
    events: list[str] = Field(default_factory=lambda: ["audit.*"])
    #: One secret, or several during a key rotation (all are used to sign).
    secret: SecretStr | list[SecretStr]
    #: Extra headers, e.g. ``{X-Source: hellojohn}``; values are treated as secrets (never logged).
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    batch: bool = False
    batch_size: int = Field(default=100, ge=1, le=1_000)
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    #: ``ocsf``: the body is an OCSF event (or a list of them); ``raw``: the event as exported.
    target_schema: Literal["raw", "ocsf"] = Field(default="raw", alias="schema")
    #: OCSF version and event-type table; see docs/schemas/ocsf.md.
    ocsf: OcsfSettings = Field(default_factory=OcsfSettings)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value or any(ord(c) < 32 for c in value):
            raise ValueError("must be a non-empty name without control characters, e.g. SIEM Audit Forward")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return require_http_url(value, ", e.g. https://siem.example.com/api/ingest")

    @field_validator("events")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('selects no event; use ["audit.*"] for all events')
        for pattern in value:
            if not (pattern == "*" or pattern.startswith("audit.")):
                raise ValueError(f"pattern {pattern!r} can never match: event names are audit.<type>, e.g. audit.* or audit.user.*")
        return value

    @field_validator("secret")
    @classmethod
    def _secrets(cls, value: SecretStr | list[SecretStr]) -> SecretStr | list[SecretStr]:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ValueError("needs at least one secret")
        for n, item in enumerate(items):
            _key(item.get_secret_value(), f"secret #{n + 1}")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for header in value:
            if not _TOKEN.match(header):
                raise ValueError(f"{header!r} is not a valid HTTP header name")
            if header.lower() in _OURS:
                raise ValueError(f"{header!r} is set by the pipeline itself and cannot be overridden")
        return value

    def secrets(self) -> list[str]:
        items = self.secret if isinstance(self.secret, list) else [self.secret]
        return [s.get_secret_value() for s in items]


def _key(secret: str, what: str) -> bytes:
    """The HMAC key: the secret's UTF-8 bytes, or the base64 payload of a ``whsec_`` secret."""
    if not secret:
        raise ValueError(f"{what} is empty; set it from the environment, e.g. secret: ${{WEBHOOK_SECRET}}")
    if not secret.startswith("whsec_"):
        return secret.encode("utf-8")
    try:
        key = base64.b64decode(secret[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} starts with whsec_ but the rest is not base64 (the Standard Webhooks secret form)") from None
    if not key:
        raise ValueError(f"{what} is whsec_ with nothing after it")
    return key
