"""What a pass or a dead-letter replay did, as the command prints it and Dagster records it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from audit_pipeline.sources.base import Position


def show_position(position: Position | None) -> str:
    return "(start)" if position is None else f"{position.created_at.isoformat()} {position.id}"


@dataclass
class PassResult:
    sink: str
    horizon: dt.datetime
    position: Position | None
    delivered: int = 0
    dead_lettered: int = 0
    #: Events the sink does not want (``Sink.accepts``): passed over as handled.
    skipped: int = 0
    #: Events committed behind the position after an earlier pass had gone by (found by the sweep).
    late_events: int = 0
    #: Events delivered with their largest fields cut to the sink's per-event limit (whole copies in the dead letters).
    truncated: int = 0
    batches: int = 0
    dead_letter_keys: list[str] = field(default_factory=list)
    #: Why the pass stopped before the horizon; None when it got there.
    stopped: str | None = None
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.stopped is None

    def summary(self) -> str:
        text = f"{self.sink}: {self.delivered:,} delivered, {self.dead_lettered:,} dead-lettered"
        if self.skipped:
            text += f", {self.skipped:,} not wanted by the sink"
        if self.late_events:
            text += f", {self.late_events:,} late (committed after the position had passed them)"
        if self.truncated:
            text += f", {self.truncated:,} truncated to fit the sink (whole in the dead letters)"
        text += f" in {self.seconds:.1f}s; position {show_position(self.position)}"
        if self.stopped:
            text += f"; STOPPED before the horizon {self.horizon.isoformat()}: {self.stopped}"
        return text


@dataclass
class ReplayResult:
    sink: str
    objects: int = 0
    delivered: int = 0
    still_rejected: int = 0
    stopped: str | None = None

    def summary(self) -> str:
        text = f"{self.sink}: replayed {self.objects} dead-letter object(s): {self.delivered:,} delivered, {self.still_rejected:,} rejected again"
        if self.stopped:
            text += f"; STOPPED: {self.stopped}"
        return text
