"""Why a forwarding pass stopped: each error's message says what happened and what to check."""

from __future__ import annotations

from audit_pipeline.core.errors import AuditPipelineError
from audit_pipeline.core.errors import first_line as first_line  # named here for the forwarding modules


class ForwardingError(AuditPipelineError):
    """A pass could not finish; the message says why and what to do."""


class SinkBusy(ForwardingError):
    """Another forwarder holds the sink's lease."""


class DeliveryStalled(ForwardingError):
    """A batch kept failing for longer than ``retry.give_up_seconds``."""
