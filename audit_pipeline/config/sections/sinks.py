"""``sinks:``: one typed section per sink kind, each with the common forwarding keys (``start``,
``enabled``, ``max_events_per_second``) beside the sink's own settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from audit_pipeline.config.sections.datadog import DatadogSettings
from audit_pipeline.config.sections.elasticsearch import ElasticsearchSettings
from audit_pipeline.config.sections.forwarding import SinkForwarding
from audit_pipeline.config.sections.splunk import SplunkSettings
from audit_pipeline.config.sections.webhook import WebhookSettings


class ElasticsearchSection(ElasticsearchSettings, SinkForwarding):
    """``sinks.elasticsearch``: daily indices on an Elasticsearch cluster."""


class DatadogSection(DatadogSettings, SinkForwarding):
    """``sinks.datadog``: Datadog Logs through the HTTP intake v2."""


class SplunkSection(SplunkSettings, SinkForwarding):
    """``sinks.splunk``: Splunk's HTTP Event Collector."""


class WebhookSection(WebhookSettings, SinkForwarding):
    """One entry of ``sinks.webhooks``: a signed webhook, named ``webhook:<name>``."""


class SinksSettings(BaseModel):
    """``sinks:``: which destinations receive the audit events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    elasticsearch: ElasticsearchSection | None = None
    datadog: DatadogSection | None = None
    splunk: SplunkSection | None = None
    webhooks: list[WebhookSection] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_webhooks(self) -> SinksSettings:
        seen: set[str] = set()
        for hook in self.webhooks:
            if hook.name in seen:
                raise ValueError(f"two webhooks are named {hook.name!r}; webhook names must be unique")
            seen.add(hook.name)
        return self

    def sections(self) -> list[tuple[str, str, SinkForwarding]]:
        """``(kind, key path, section)`` of every configured sink, in the file's order of kinds."""
        found: list[tuple[str, str, SinkForwarding]] = []
        for kind in ("elasticsearch", "datadog", "splunk"):
            section = getattr(self, kind)
            if section is not None:
                found.append((kind, f"sinks.{kind}", section))
        found += [("webhooks", f"sinks.webhooks[{i}]", hook) for i, hook in enumerate(self.webhooks)]
        return found

    def configured(self, kind: str) -> bool:
        return (kind == "webhooks" and bool(self.webhooks)) or (kind != "webhooks" and getattr(self, kind, None) is not None)
