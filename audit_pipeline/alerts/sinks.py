"""Sink conditions: lagging or stopped (the oldest undelivered event older than ``alerts.sink_lag_seconds``) and a
dead-letter backlog (``alerts.dead_letters`` or more pending), measured from the positions and the source the same
way ``audit-pipeline sinks list`` and the lag assets measure them, whoever forwards."""

from __future__ import annotations

from collections.abc import Callable

from audit_pipeline.alerts.condition import Condition
from audit_pipeline.config.settings import Settings
from audit_pipeline.forwarding.configured import configured_sinks
from audit_pipeline.forwarding.horizon import measure_lag
from audit_pipeline.forwarding.positions import PositionStore
from audit_pipeline.sources.registry import open_source


def sink_conditions(settings: Settings, link: Callable[[str], str | None] = lambda sink: None) -> list[Condition]:
    """One lag and one dead-letter condition per enabled sink; ``link`` gives the page to look at for a sink."""
    alerts = settings.alerts
    configured = [c for c in configured_sinks(settings) if c.options.enabled]
    for sink in configured:
        sink.sink.close()
    if not configured:
        return []
    conditions: list[Condition] = []
    store = PositionStore.from_settings(settings)
    try:
        states = {state.sink: state for state in store.all()}
        with open_source(settings) as source:
            for sink in configured:
                state = states.get(sink.name)
                where = link(sink.name)
                lag = measure_lag(source, state, sink.options.start)
                conditions.append(
                    Condition(
                        key=f"sink-lag:{sink.name}",
                        firing=lag.seconds > alerts.sink_lag_seconds,
                        title=f"sink {sink.name} is {lag.seconds:,.0f} s behind ({lag.events:,} events undelivered)",
                        detail=f"its oldest undelivered event is older than alerts.sink_lag_seconds ({alerts.sink_lag_seconds:,.0f} s): "
                        "is its forwarder running, and does the sink accept events?",
                        link=where,
                    )
                )
                pending = state.dead_letters_pending if state else 0
                conditions.append(
                    Condition(
                        key=f"dead-letters:{sink.name}",
                        firing=pending >= alerts.dead_letters,
                        title=f"sink {sink.name} has {pending:,} dead letters pending",
                        detail=f"audit-pipeline deadletters list {sink.name}, then deadletters replay {sink.name} once the cause is fixed",
                        link=where,
                    )
                )
    finally:
        store.close()
    return conditions
