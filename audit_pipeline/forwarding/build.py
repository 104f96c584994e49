"""Assemble a forwarder for one configured sink from the settings (shared by the command and Dagster)."""

from __future__ import annotations

from collections.abc import Callable

from audit_pipeline.config.settings import Settings
from audit_pipeline.core.redaction import redact
from audit_pipeline.forwarding.configured import find_sink
from audit_pipeline.forwarding.deadletters import DeadLetterStore
from audit_pipeline.forwarding.engine import Forwarder
from audit_pipeline.forwarding.positions import PositionStore
from audit_pipeline.sinks.privacy import privacy_filter
from audit_pipeline.sources.registry import open_source
from audit_pipeline.storage.object_store import ObjectStore


def open_forwarder(settings: Settings, sink_name: str, *, log: Callable[[str], None] | None = None, max_rate: float | None = None) -> Forwarder:
    """The forwarder for ``sink_name``; close it (``forwarder.close()``) to release the sink and connections."""
    fwd = settings.forwarding
    if max_rate is not None:
        fwd = fwd.model_copy(update={"max_events_per_second": max_rate})
    configured = find_sink(settings, sink_name)
    options = configured.options
    if max_rate is not None:
        options = options.model_copy(update={"max_events_per_second": max_rate})
    source = open_source(settings)
    positions = PositionStore.from_settings(settings)
    dead_letters = DeadLetterStore(ObjectStore.from_settings(settings.export))
    # Every line the engine logs passes the redaction, whatever a sink or driver put in it.
    forwarder = Forwarder(
        configured.sink,
        source,
        positions,
        dead_letters,
        fwd,
        options,
        log=(lambda message: log(redact(message))) if log else None,
        transform=privacy_filter(options.privacy),  # what this sink may see; its dead letters hold the same
    )
    return forwarder


def close_forwarder(forwarder: Forwarder) -> None:
    forwarder.close()
    forwarder.source.close()
    forwarder.positions.close()
