"""Where audit events come from: one interface, several back ends.

Every source yields Arrow record batches in the canonical schema (:mod:`audit_pipeline.core.schema`),
in ``(created_at, id)`` order with ids compared bytewise, which is the order the exports,
the integrity chain and the forwarding positions all rely on.
"""

from audit_pipeline.core.event_filters import EventFilter
from audit_pipeline.sources.base import AuditSource, Position, TimeRange
from audit_pipeline.sources.registry import open_source

__all__ = ["AuditSource", "EventFilter", "Position", "TimeRange", "open_source"]
