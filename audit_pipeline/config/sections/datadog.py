"""``sinks.datadog``: the API key, site or intake URL, and how log entries are labelled, checked at load."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from audit_pipeline.config.sections.ocsf import OcsfSettings
from audit_pipeline.config.sections.urls import require_http_url

#: Datadog sites and their logs intake hosts (Datadog API reference, "Send logs", v2).
SITES: dict[str, str] = {
    "datadoghq.com": "http-intake.logs.datadoghq.com",
    "us3.datadoghq.com": "http-intake.logs.us3.datadoghq.com",
    "us5.datadoghq.com": "http-intake.logs.us5.datadoghq.com",
    "datadoghq.eu": "http-intake.logs.datadoghq.eu",
    "ap1.datadoghq.com": "http-intake.logs.ap1.datadoghq.com",
    "ap2.datadoghq.com": "http-intake.logs.ap2.datadoghq.com",
    "uk1.datadoghq.com": "http-intake.logs.uk1.datadoghq.com",
    "ddog-gov.com": "http-intake.logs.ddog-gov.com",
    "us2.ddog-gov.com": "http-intake.logs.us2.ddog-gov.com",
}
#: The web UI host names people copy from their browser, mapped to the site they belong to.
_SITE_ALIASES = {"app.datadoghq.com": "datadoghq.com", "app.datadoghq.eu": "datadoghq.eu", "app.ddog-gov.com": "ddog-gov.com"}


class DatadogSettings(BaseModel):
    """``sinks.datadog`` in the YAML, with the fields HelloJohn's own Datadog integration uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr
    site: str = "datadoghq.com"
    #: Full intake URL, for a proxy or a test receiver; overrides ``site``.
    url: str | None = None
    service: str = "hellojohn"
    source: str = "hellojohn-audit"
    hostname: str = Field(default_factory=socket.gethostname)
    #: ``["env:prod", "team:security"]``, ``{env: prod}`` or ``"env:prod,team:security"``.
    tags: list[str] | dict[str, str] | str = Field(default_factory=list)
    late_events: Literal["ingest_time", "dead_letter"] = "ingest_time"
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    #: ``ocsf``: each log's attributes are an OCSF event; ``raw``: the 14 exported columns.
    target_schema: Literal["raw", "ocsf"] = Field(default="raw", alias="schema")
    #: OCSF version and event-type table; see docs/schemas/ocsf.md.
    ocsf: OcsfSettings = Field(default_factory=OcsfSettings)

    @field_validator("api_key")
    @classmethod
    def _key_present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("is empty; set it from the environment, e.g. api_key: ${DD_API_KEY}")
        return value

    @field_validator("site")
    @classmethod
    def _known_site(cls, value: str) -> str:
        site = _SITE_ALIASES.get(value.strip().lower(), value.strip().lower())
        if site not in SITES:
            raise ValueError(f"unknown Datadog site {value!r}; use one of {', '.join(SITES)} (or set url)")
        return site

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else require_http_url(value, " of the logs intake, e.g. https://proxy.internal/api/v2/logs")

    @field_validator("tags")
    @classmethod
    def _tag_list(cls, value: list[str] | dict[str, str] | str) -> list[str]:
        if isinstance(value, str):
            items = [t.strip() for t in value.split(",") if t.strip()]
        elif isinstance(value, dict):
            items = [f"{k}:{v}" for k, v in value.items()]
        else:
            items = [t.strip() for t in value]
        for tag in items:
            if not tag or "," in tag:
                raise ValueError(f"tag {tag!r} must be non-empty and contain no comma")
        return items

    def intake_url(self) -> str:
        return self.url or f"https://{SITES[self.site]}/api/v2/logs"
