"""``sinks.splunk``: the HEC URL and token, index and acknowledgement options, checked at load."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from audit_pipeline.config.sections.ocsf import OcsfSettings
from audit_pipeline.config.sections.urls import require_http_url

EVENT_PATH = "/services/collector/event"


class SplunkSettings(BaseModel):
    """``sinks.splunk`` in the YAML, with the fields HelloJohn's own Splunk integration uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hec_url: str
    hec_token: SecretStr
    index: str | None = None
    sourcetype: str = "_json"
    source: str = "hellojohn-audit"
    host: str = Field(default_factory=socket.gethostname)
    use_ack: bool = False
    ack_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    #: Requests are split below this size; Splunk's ``max_content_length`` must be at least this.
    max_request_bytes: int = Field(default=1_000_000, ge=10_000)
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    tls_verify: bool = True
    #: PEM bundle for a HEC with a private CA (Splunk's default certificate is self-signed).
    tls_ca_file: str | None = None
    #: ``cim``: fields of CIM's Authentication/Change models; ``ocsf``: OCSF events (sourcetype ``ocsf:hellojohn``
    #: unless set, for Splunk's OCSF-CIM add-on); ``raw``: the 14 exported columns.
    target_schema: Literal["raw", "cim", "ocsf"] = Field(default="raw", alias="schema")
    #: OCSF version and event-type table; see docs/schemas/ocsf.md.
    ocsf: OcsfSettings = Field(default_factory=OcsfSettings)

    @field_validator("hec_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip()
        require_http_url(value, " such as https://splunk.example.com:8088")
        for suffix in (EVENT_PATH, "/services/collector"):
            if value.rstrip("/").endswith(suffix):
                value = value.rstrip("/")[: -len(suffix)]
        return value.rstrip("/")

    @field_validator("hec_token")
    @classmethod
    def _token_present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("is empty; set it from the environment, e.g. hec_token: ${SPLUNK_HEC_TOKEN}")
        return value
