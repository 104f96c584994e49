"""Which sinks are configured: a mapping from a ``sinks:`` key to the function that builds that sink.

A builder takes the sink's own section (the common forwarding keys such as ``start`` already
split off, see :mod:`audit_pipeline.forwarding.config`) and the key path for error messages,
and returns a :class:`~audit_pipeline.sinks.base.Sink`.  Building must not touch the network
(that is ``Sink.prepare``), so listing sinks is cheap enough for Dagster to do at load time.
A section holding a list (``webhooks: [...]``) builds one sink per item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from audit_pipeline.errors import ConfigError
from audit_pipeline.forwarding.config import SinkForwarding, split_sink_section
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


@dataclass
class ConfiguredSink:
    """A sink as configured: its name, where in the YAML it is, its forwarding options, the sink."""

    name: str
    where: str
    options: SinkForwarding
    sink: Sink


def configured_sinks(settings: Settings, *, include_disabled: bool = False) -> list[ConfiguredSink]:
    """Every sink in ``sinks:``, validated; unknown keys and duplicate names are errors naming the key."""
    found: list[ConfiguredSink] = []
    for key, raw in settings.sinks.items():
        builder = BUILDERS.get(key)
        if builder is None:
            raise ConfigError(f"sinks.{key}: unknown sink; configured sinks may be {', '.join(sorted(BUILDERS))}")
        if raw is None:
            continue
        items = [(f"sinks.{key}[{i}]", item) for i, item in enumerate(raw)] if isinstance(raw, list) else [(f"sinks.{key}", raw)]
        for where, item in items:
            if not isinstance(item, dict):
                raise ConfigError(f"{where} must be a mapping of settings, not {type(item).__name__}")
            options, own = split_sink_section(item, where)
            if not options.enabled and not include_disabled:
                continue
            sink = builder(own, where)
            if any(s.name == sink.name for s in found):
                raise ConfigError(f"{where}: a second sink named {sink.name!r}; sink names must be unique")
            found.append(ConfiguredSink(sink.name, where, options, sink))
    return found


def find_sink(settings: Settings, name: str) -> ConfiguredSink:
    """The configured sink called ``name``, or an error listing the ones there are."""
    sinks = configured_sinks(settings, include_disabled=True)
    for configured in sinks:
        if configured.name == name:
            if not configured.options.enabled:
                raise ConfigError(f"sink {name} is disabled ({configured.where}.enabled: false)")
            for other in sinks:
                if other is not configured:
                    other.sink.close()
            return configured
    for configured in sinks:
        configured.sink.close()
    known = ", ".join(s.name for s in sinks) or "none"
    raise ConfigError(f"no sink named {name!r} in the configuration's sinks: section (configured: {known})")
