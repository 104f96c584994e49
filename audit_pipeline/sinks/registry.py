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

from audit_pipeline.config.settings import Settings
from audit_pipeline.sinks.base import Sink

SinkBuilder = Callable[[Any, str], Sink]


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


def sink_sections(settings: Settings) -> Iterator[tuple[str, str, Any]]:
    """Every sink entry in ``sinks:`` as (key, where in the YAML, its typed section), in the order of kinds.

    Unknown sinks and keys were refused when the settings loaded, naming the key."""
    yield from settings.sinks.sections()


def build_sink(key: str, own: Any, where: str) -> Sink:
    """The sink of a ``sinks:`` entry from its own settings: a mapping, or the typed section (an
    instance of the sink's settings model)."""
    return BUILDERS[key](own, where)
