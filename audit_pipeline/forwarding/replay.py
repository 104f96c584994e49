"""Replaying a sink's dead letters once the cause of their rejection is fixed.

Delivered events leave the store, the others stay with their new reason.  A crash between a
send and the rewrite of its object leaves the object in place, so the next replay sends those
events again (Elasticsearch: 409, delivered once; other sinks: at least once).  Events that
were delivered cut down to fit the sink are kept for the record and not sent again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from audit_pipeline.core.errors import AuditPipelineError
from audit_pipeline.forwarding.deadletters import DeadLetterStore
from audit_pipeline.forwarding.delivered_counts import events_by_day
from audit_pipeline.forwarding.delivery import Courier
from audit_pipeline.forwarding.positions import PositionStore
from audit_pipeline.forwarding.results import ReplayResult
from audit_pipeline.sinks.base import SinkFailure


def replay_dead_letters(
    sink: str,
    courier: Courier,
    dead_letters: DeadLetterStore,
    positions: PositionStore,
    *,
    log: Callable[[str], None] = lambda _message: None,
    clock: Callable[[], float] = time.monotonic,
    progress_interval: float = 1.0,
) -> ReplayResult:
    """Send ``sink`` its dead letters again through ``courier``, one object at a time (the caller holds the
    lease and has prepared the sink: :meth:`.engine.Forwarder.replay_dead_letters`)."""
    name = sink
    result = ReplayResult(name)
    started = clock()
    try:
        for obj in dead_letters.iter_objects(name, delivered=False):
            settled = courier.settle(obj.events, list(range(len(obj.events))))
            rejected = settled.rejected
            dead_letters.rewrite(name, obj, sorted(rejected), rejected)
            positions.replayed(name, settled.delivered, events_by_day(obj.events.batch, rejected))
            result.delivered += settled.delivered
            result.still_rejected += len(rejected)
            result.objects += 1
            if rejected:
                first = sorted(rejected)[0]
                log(f"{name}: {len(rejected)} event(s) of {obj.key} rejected again: {rejected[first]}")
            if clock() - started >= progress_interval:
                log(f"{name}: replayed {result.objects} object(s), {result.delivered:,} delivered")
    except (SinkFailure, AuditPipelineError) as exc:
        result.stopped = str(exc)
    return result
