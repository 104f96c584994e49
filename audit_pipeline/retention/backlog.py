"""How far every enabled sink has delivered: rows after that point are still needed and never deleted.

PostgreSQL is the forwarding buffer: a sink that is down keeps its durable position and
resumes from it.  If retention deleted rows past a lagging sink's position, an outage would
turn into silent loss, so each enabled sink holds back every day it has not fully
delivered.  A sink with no position yet holds back what it will deliver when it starts
(``start: earliest`` everything, ``start: DAY`` that day on; ``start: now`` nothing).

A position inside a day holds the day only while the day has rows after it: a sink whose
position sits on the day's last event (nothing newer was written yet) has delivered the day
(:meth:`SinkHold.holds` with ``rows_after``); whether every event *behind* the position
arrived is counted separately (:mod:`.delivered`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from audit_pipeline.config.settings import Settings
from audit_pipeline.sources.base import EARLIEST, Position


@dataclass(frozen=True)
class SinkHold:
    """Every row of ``sink`` before ``delivered_before`` is delivered (or never will be sent)."""

    sink: str
    delivered_before: dt.datetime
    position: str
    #: Where the sink is configured (``sinks.webhooks[0]``): the key to name in advice.
    where: str = "sinks"
    #: The sink's durable position, when it has delivered something.
    last: Position | None = None

    def holds(self, day: dt.date, rows_after: Callable[[dt.datetime, str], int] | None = None) -> bool:
        """The sink still needs rows of ``day``.

        ``rows_after(created_at, id)`` counts the day's rows after a position; with it, a
        position inside the day with no row of the day after it has delivered the day."""
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        if start + dt.timedelta(days=1) <= self.delivered_before:
            return False
        if rows_after is None or self.last is None or self.last.created_at < start:
            return True
        return rows_after(self.last.created_at, self.last.id) > 0

    @property
    def disable_hint(self) -> str:
        """The setting that turns the sink off, as it is spelled in the configuration file."""
        return f"{self.where}.enabled: false"


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
                    holds.append(SinkHold(configured.name, EARLIEST, "before the first event (nothing delivered yet)", configured.where))
                else:
                    at = state.position
                    holds.append(SinkHold(configured.name, at.created_at, f"{at.created_at.isoformat()} {at.id}", configured.where, at))
            elif start == "earliest":
                holds.append(SinkHold(configured.name, EARLIEST, "not started yet, with start: earliest", configured.where))
            elif isinstance(start, dt.date):
                begin = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)
                holds.append(SinkHold(configured.name, begin, f"not started yet, with start: {start}", configured.where))
        return holds
    finally:
        for configured in sinks:
            configured.sink.close()
