"""Which sinks are configured: a mapping from a ``sinks:`` key to the function that builds that sink.

A builder takes the sink's own section (the common forwarding keys such as ``start`` already
split off by :mod:`audit_pipeline.forwarding.configured`, which pairs each sink with them) and the key path for error messages,
and returns a :class:`~audit_pipeline.sinks.base.Sink`.  Building must not touch the network
(that is ``Sink.prepare``), so listing sinks is cheap enough for Dagster to do at load time.
A section holding a list (``webhooks: [...]``) builds one sink per item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from audit_pipeline.errors import ConfigError
from audit_pipeline.settings import Settings
from audit_pipeline.sinks.base import Sink

SinkBuilder = Callable[[dict[str, Any], str], Sink]


def _elasticsearch(raw: dict[str, Any], where: str) -> Sink:
    from audit_pipeline.sinks.elasticsearch import ElasticsearchSink

    return ElasticsearchSink.from_config(raw, where)


def _datadog(raw: dict[str, Any], where: str) -> Sink:
    from audit_pipeline.sinks.datadog import DatadogSink

    return DatadogSink.from_config(raw, where)


def _splunk(raw: dict[str, Any], where: str) -> Sink:
    from audit_pipeline.sinks.splunk import SplunkSink

    return SplunkSink.from_config(raw, where)


def _webhook(raw: dict[str, Any], where: str) -> Sink:
    from audit_pipeline.sinks.webhook import WebhookSink

    return WebhookSink.from_config(raw, where)


#: ``sinks:`` key → builder.  Add an entry per sink module.
BUILDERS: dict[str, SinkBuilder] = {
    "elasticsearch": _elasticsearch,
    "datadog": _datadog,
    "splunk": _splunk,
    "webhooks": _webhook,  # a list: one sink per webhook, named webhook:<name>
}


def sink_sections(settings: Settings) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every sink entry in ``sinks:`` as (key, where in the YAML, its mapping); unknown keys are errors naming the key."""
    for key, raw in settings.sinks.items():
        if key not in BUILDERS:
            raise ConfigError(f"sinks.{key}: unknown sink; configured sinks may be {', '.join(sorted(BUILDERS))}")
        if raw is None:
            continue
        items = [(f"sinks.{key}[{i}]", item) for i, item in enumerate(raw)] if isinstance(raw, list) else [(f"sinks.{key}", raw)]
        for where, item in items:
            if not isinstance(item, dict):
                raise ConfigError(f"{where} must be a mapping of settings, not {type(item).__name__}")
            yield key, where, item


def build_sink(key: str, own: dict[str, Any], where: str) -> Sink:
    """The sink of a ``sinks:`` entry from its own settings (forwarding keys already split off)."""
    return BUILDERS[key](own, where)
