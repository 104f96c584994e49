"""Getting one batch accepted by a sink: send it, re-send only what may be retried (with the
retry policy), and collect what the sink rejected for good or accepted only cut down.

A sink reports per event (:class:`~audit_pipeline.sinks.base.DeliveryReport`) and raises only
when it cannot be used at all (:class:`~audit_pipeline.sinks.base.SinkFailure`).  When a batch
keeps failing, the pass stops with the *last real failure* (a refused connection, a timeout,
the sink's answer), never with a placeholder for events that were merely waiting their turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from audit_pipeline.core.errors import AuditPipelineError, first_line
from audit_pipeline.forwarding.errors import DeliveryStalled, ForwardingError
from audit_pipeline.forwarding.positions import LeaseLost
from audit_pipeline.forwarding.retry import GaveUp, RetryLater, RetryPolicy
from audit_pipeline.sinks.base import DeliveryReport, EventBatch, Outcome, Sink, SinkFailure


@dataclass
class Settled:
    """How a batch ended: every event delivered, skipped (not wanted) or rejected (with reasons)."""

    delivered: int = 0
    skipped: int = 0
    rejected: dict[int, str] = field(default_factory=dict)
    #: Delivered with fields cut to the sink's per-event limit; index → why (whole copies go to the dead letters).
    truncated: dict[int, str] = field(default_factory=dict)


class Courier:
    """Delivers batches to one sink; safe to use from several workers at once."""

    def __init__(self, sink: Sink, policy: RetryPolicy, check_lease: Callable[[], None]) -> None:
        self.sink = sink
        self.policy = policy
        self.check_lease = check_lease
        self._filters = type(sink).accepts is not Sink.accepts

    def prepare(self) -> None:
        """The sink's one-time setup, retried like a send when it fails for a passing reason."""
        try:
            self.policy.call(self.sink.prepare, f"{self.sink.name}: preparing the sink", transient=_transient)
        except GaveUp as exc:
            raise DeliveryStalled(
                f"{self.sink.name}: preparing the sink kept failing for {exc.seconds:.0f}s "
                f"(retry.give_up_seconds={self.policy.settings.give_up_seconds:g}): {type(exc.last).__name__}: {first_line(exc.last)}; "
                "nothing was sent, the next pass resumes at the same position"
            ) from None

    def settle(self, events: EventBatch, pending: list[int] | None = None) -> Settled:
        """Send until every pending event is delivered or rejected.

        Raises :class:`DeliveryStalled` when some keep failing for ``retry.give_up_seconds``.
        """
        n = len(events)
        settled = Settled()
        if pending is None:
            pending = [i for i, t in enumerate(events.types) if self.sink.accepts(t)] if self._filters else list(range(n))
            settled.skipped = n - len(pending)
        waiting = {"indices": pending}

        def attempt() -> None:
            self.check_lease()
            indices = waiting["indices"]
            part = events if len(indices) == n else events.take(indices)
            report = self.send(part)
            retry: list[int] = []
            reason = ""
            for j, outcome in enumerate(report.outcomes):
                i = indices[j]
                if outcome is Outcome.DELIVERED:
                    settled.delivered += 1
                    if j in report.truncated:
                        settled.truncated[i] = report.truncated[j]
                elif outcome is Outcome.REJECTED:
                    settled.rejected[i] = report.reasons.get(j) or "rejected by the sink (no reason given)"
                else:
                    retry.append(i)
                    reason = reason or report.reasons.get(j, "")
            waiting["indices"] = retry
            if retry:
                raise RetryLater(f"{len(retry)} event(s): {report.failure or reason or 'retry'}", report.retry_after)

        if not pending:
            return settled
        try:
            self.policy.call(attempt, self.sink.name)
        except GaveUp as exc:
            last = exc.last.reason if isinstance(exc.last, RetryLater) else str(exc.last)
            raise DeliveryStalled(
                f"{len(waiting['indices'])} event(s) still not accepted by {self.sink.name} after {exc.seconds:.0f}s "
                f"(retry.give_up_seconds={self.policy.settings.give_up_seconds:g}); last failure: {last.split(': ', 1)[-1]}; "
                "the position stays before them and the next pass resumes there"
            ) from None
        return settled

    def send(self, part: EventBatch) -> DeliveryReport:
        """One ``Sink.send``; an unexpected exception counts as a passing failure of every event."""
        try:
            report = self.sink.send(part)
        except (SinkFailure, LeaseLost):
            raise
        except Exception as exc:  # a sink should report, not raise; treat the unexpected as transient
            return DeliveryReport.all(len(part), Outcome.RETRY, f"{type(exc).__name__}: {first_line(exc)}")
        if len(report.outcomes) != len(part):
            raise ForwardingError(f"sink {self.sink.name} answered {len(report.outcomes)} outcomes for {len(part)} events (a bug in the sink)")
        return report


def _transient(exc: BaseException) -> bool:
    return not isinstance(exc, SinkFailure | AuditPipelineError)
