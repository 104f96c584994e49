"""``sinks.elasticsearch``: the cluster, credentials, index pattern and batch limits, checked at load."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from audit_pipeline.config.sections.ocsf import OcsfSettings

DEFAULT_INDEX = "hellojohn-audit-%Y.%m.%d"
_INVALID_INDEX = re.compile(r'[\\/*?"<>| ,#:A-Z]')


class ElasticsearchSettings(BaseModel):
    """``sinks.elasticsearch``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | list[str]
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    #: PEM file of the CA that signed the cluster's certificate.
    ca_certs: str | None = None
    verify_certs: bool = True
    #: strftime pattern applied to each event's UTC created_at.
    index: str = DEFAULT_INDEX
    template_name: str = "hellojohn-audit"
    #: Install the index template on first use (needs manage_index_templates); false if admins manage it.
    manage_template: bool = True
    template_priority: int = Field(default=200, ge=0)
    batch_events: int = Field(default=5_000, ge=1, le=100_000)
    batch_bytes: int = Field(default=10_000_000, ge=10_000, le=100_000_000)
    request_timeout: float = Field(default=60.0, gt=0)
    #: The cluster's ``http.max_content_length``: an event larger than this is sent with its largest fields cut.
    max_content_length: int = Field(default=100 * 1024 * 1024, ge=10_000)
    http_compress: bool = False
    #: ``ecs``: Elastic Common Schema documents (SIEM rules and dashboards work on them); ``raw``: the 14 exported columns.
    target_schema: Literal["raw", "ecs"] = Field(default="raw", alias="schema")
    #: With ``schema: ecs``, keep the exported line in ``event.original`` (stored, not indexed).
    ecs_original: bool = True
    #: The event-type table (OCSF class/activity) that also decides ECS categories; see docs/schemas/ocsf.md.
    ocsf: OcsfSettings = Field(default_factory=OcsfSettings)

    @field_validator("url")
    @classmethod
    def _urls(cls, value: str | list[str]) -> str | list[str]:
        for url in [value] if isinstance(value, str) else value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"must be http(s)://host:port, got {_redact(url)!r}")
            if parts.username or parts.password:
                raise ValueError("must not contain credentials; use username/password (or api_key) with ${ENV} values")
        return value

    @field_validator("index")
    @classmethod
    def _index(cls, value: str) -> str:
        sample = render_index(value)
        if not sample or _INVALID_INDEX.search(sample) or sample[0] in "-_+" or sample in (".", "..") or len(sample.encode()) > 255:
            raise ValueError(
                f"gives the index name {sample!r}, which Elasticsearch refuses: use lowercase letters, digits, '-', '.', '_' and strftime codes such as %Y.%m.%d"
            )
        return value

    @model_validator(mode="after")
    def _credentials(self) -> ElasticsearchSettings:
        if self.api_key is not None and (self.username or self.password):
            raise ValueError("give either api_key or username/password, not both")
        if bool(self.username) != bool(self.password):
            raise ValueError("username and password go together")
        return self


def render_index(pattern: str, when: Any = None) -> str:
    import datetime as dt

    value = when or dt.datetime(2024, 1, 15, tzinfo=dt.UTC)
    return str(pc.strftime(pa.array([value], pa.timestamp("us", tz="UTC")), format=pattern)[0].as_py())


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return parts._replace(netloc=netloc).geturl()
    return url
