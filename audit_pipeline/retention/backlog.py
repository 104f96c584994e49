"""How far every enabled sink has delivered: rows after that point are still needed and never deleted.

PostgreSQL is the forwarding buffer: a sink that is down keeps its durable position and
resumes from it.  If retention deleted rows past a lagging sink's position, an outage would
turn into silent loss, so each enabled sink holds back every day it has not fully
delivered.  A sink with no position yet holds back what it will deliver when it starts
(``start: earliest`` everything, ``start: DAY`` that day on; ``start: now`` nothing).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from audit_pipeline.forwarding.horizon import EARLIEST
from audit_pipeline.settings import Settings


@dataclass(frozen=True)
class SinkHold:
    """Every row of ``sink`` before ``delivered_before`` is delivered (or never will be sent)."""

    sink: str
    delivered_before: dt.datetime
    position: str

    def holds(self, day: dt.date) -> bool:
        end = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
        return end > self.delivered_before


def sink_holds(settings: Settings) -> list[SinkHold]:
    """One hold per enabled sink that still needs rows; opens the state database only when sinks exist."""
    from audit_pipeline.forwarding.configured import configured_sinks
    from audit_pipeline.forwarding.positions import PositionStore

    sinks = configured_sinks(settings)
    try:
        if not sinks:
            return []
        positions = PositionStore.from_settings(settings)
        try:
            states = {s.sink: s for s in positions.all()}
        finally:
            positions.close()
        holds = []
        for configured in sinks:
            state = states.get(configured.name)
            start = configured.options.start
            if state is not None:
                if state.position is None:
                    holds.append(SinkHold(configured.name, EARLIEST, "before the first event (nothing delivered yet)"))
                else:
                    holds.append(SinkHold(configured.name, state.position.created_at, f"{state.position.created_at.isoformat()} {state.position.id}"))
            elif start == "earliest":
                holds.append(SinkHold(configured.name, EARLIEST, "not started yet, with start: earliest"))
            elif isinstance(start, dt.date):
                begin = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)
                holds.append(SinkHold(configured.name, begin, f"not started yet, with start: {start}"))
        return holds
    finally:
        for configured in sinks:
            configured.sink.close()
