"""Forwarding settings: the ``forwarding:`` section, and the keys every ``sinks.<name>`` may carry.

The engine's knobs live in ``forwarding:`` (they apply to every sink); where a sink starts
and how fast it may catch up are per sink, written next to that sink's own settings
(``sinks.elasticsearch.start: now``).  The registry splits those common keys off before the
sink's own model sees the section, so sink modules never need to know about them.
"""

from __future__ import annotations

from typing import Any

from audit_pipeline.config.sections.forwarding import COMMON_SINK_KEYS, SinkForwarding
from audit_pipeline.config.settings import parse_section

__all__ = ["split_sink_section"]


def split_sink_section(raw: Any, where: str) -> tuple[SinkForwarding, Any]:
    """Separate the common forwarding keys from a sink's own section.

    A typed section (as the loaded settings hold it) is both: its forwarding keys are copied
    out, and it is itself an instance of the sink's own settings model."""
    if isinstance(raw, SinkForwarding):
        return SinkForwarding.model_validate({k: getattr(raw, k) for k in COMMON_SINK_KEYS}), raw
    if not isinstance(raw, dict):
        return SinkForwarding(), raw
    common = {k: v for k, v in raw.items() if k in COMMON_SINK_KEYS}
    own = {k: v for k, v in raw.items() if k not in COMMON_SINK_KEYS}
    return parse_section(SinkForwarding, common, where), own
