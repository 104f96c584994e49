"""Why a forwarding pass stopped: each error's message says what happened and what to check."""

from __future__ import annotations

from audit_pipeline.errors import AuditPipelineError


class ForwardingError(AuditPipelineError):
    """A pass could not finish; the message says why and what to do."""


class SinkBusy(ForwardingError):
    """Another forwarder holds the sink's lease."""


class DeliveryStalled(ForwardingError):
    """A batch kept failing for longer than ``retry.give_up_seconds``."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (drivers append detail we do not repeat)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
