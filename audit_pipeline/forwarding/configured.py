"""Which sinks are configured for forwarding: each sink built by its module (:mod:`audit_pipeline.sinks.registry`)
together with the forwarding keys of its section (``start``, ``enabled``, ``concurrency``...).

The forwarding keys are split off here, above the sinks, so that sink modules never import
forwarding (imports only go down).
"""

from __future__ import annotations

from dataclasses import dataclass

from audit_pipeline.config.sections.forwarding import SinkForwarding
from audit_pipeline.config.settings import Settings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.forwarding.config import split_sink_section
from audit_pipeline.sinks.base import Sink
from audit_pipeline.sinks.registry import build_sink, sink_sections


@dataclass
class ConfiguredSink:
    """A sink as configured: its name, where in the YAML it is, its forwarding options, the sink."""

    name: str
    where: str
    options: SinkForwarding
    sink: Sink

    @property
    def kind(self) -> str:
        """The ``sinks:`` key it came from (``elasticsearch``, ``webhooks``...)."""
        return self.where.split(".", 1)[1].split("[", 1)[0]


def configured_sinks(settings: Settings, *, include_disabled: bool = False) -> list[ConfiguredSink]:
    """Every sink in ``sinks:``, validated; unknown keys and duplicate names are errors naming the key."""
    found: list[ConfiguredSink] = []
    for key, where, item in sink_sections(settings):
        options, own = split_sink_section(item, where)
        if not options.enabled and not include_disabled:
            continue
        sink = build_sink(key, own, where)
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
    raise ConfigError(_unknown(name, [s.name for s in sinks]))


def check_sink_name(settings: Settings, name: str, also: str = "") -> None:
    """Refuse a name that no sink in ``sinks:`` has, enabled or not (each is built to validate it, then closed)."""
    sinks = configured_sinks(settings, include_disabled=True)
    for configured in sinks:
        configured.sink.close()
    names = [s.name for s in sinks]
    if name not in names:
        raise ConfigError(_unknown(name, names) + also)


def _unknown(name: str, names: list[str]) -> str:
    return f"no sink named {name!r} in the configuration's sinks: section (configured: {', '.join(names) or 'none'})"
