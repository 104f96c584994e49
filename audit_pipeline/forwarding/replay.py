"""Replaying a sink's dead letters once the cause of their rejection is fixed.

Delivered events leave the store, the others stay with their new reason.  A crash between a
send and the rewrite of its object leaves the object in place, so the next replay sends those
events again (Elasticsearch: 409, delivered once; other sinks: at least once).  Events that
were delivered cut down to fit the sink are kept for the record and not sent again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from audit_pipeline.errors import AuditPipelineError
from audit_pipeline.forwarding.delivered_counts import events_by_day
from audit_pipeline.forwarding.results import ReplayResult
from audit_pipeline.sinks.base import SinkFailure

if TYPE_CHECKING:
    from audit_pipeline.forwarding.engine import Forwarder


def replay_dead_letters(forwarder: Forwarder) -> ReplayResult:
    """Send ``forwarder``'s sink its dead letters again, one object at a time (the caller holds the lease)."""
    f = forwarder
    name = f.sink.name
    result = ReplayResult(name)
    started = f._clock()
    try:
        f.prepare_sink()
        for obj in f.dead_letters.iter_objects(name, delivered=False):
            settled = f.courier.settle(obj.events, list(range(len(obj.events))))
            rejected = settled.rejected
            f.dead_letters.rewrite(name, obj, sorted(rejected), rejected)
            f.positions.replayed(name, settled.delivered, events_by_day(obj.events.batch, rejected))
            result.delivered += settled.delivered
            result.still_rejected += len(rejected)
            result.objects += 1
            if rejected:
                first = sorted(rejected)[0]
                f.log(f"{name}: {len(rejected)} event(s) of {obj.key} rejected again: {rejected[first]}")
            if f._clock() - started >= f.progress_interval:
                f.log(f"{name}: replayed {result.objects} object(s), {result.delivered:,} delivered")
    except (SinkFailure, AuditPipelineError) as exc:
        result.stopped = str(exc)
    return result
