"""Which alerts have been sent, per condition and channel, in the state database (``state_url``).

This is what makes alerts one per failure and one "resolved" when it clears: a channel is sent a message only when
the condition's state differs from what that channel was last told. A channel that fails is told again on the next
evaluation, without repeating the message to the channels that took it. Between a send and its record a crash can
repeat one message (at least once, never lost).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from audit_pipeline.alerts.channels import AlertDeliveryError, Sender
from audit_pipeline.alerts.condition import Condition, Message

metadata = sa.MetaData()
alerts_table = sa.Table(
    "audit_pipeline_alerts",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("channel", sa.String(40), primary_key=True),
    sa.Column("firing", sa.Boolean, nullable=False),
    sa.Column("changed_at", sa.Float, nullable=False),
)


@dataclass
class Evaluation:
    """What one evaluation sent, and the channels that refused (each with its one-line reason)."""

    sent: list[tuple[str, Message]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class AlertBook:
    def __init__(self, state_url: str) -> None:
        self.engine = sa.create_engine(state_url)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def told(self, key: str, channel: str) -> bool:
        """Whether ``channel`` was last told that ``key`` is firing."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(alerts_table.c.firing).where(alerts_table.c.key == key, alerts_table.c.channel == channel)).first()
        return bool(row and row.firing)

    def _record(self, key: str, channel: str, firing: bool) -> None:
        with self.engine.begin() as conn:
            updated = conn.execute(
                alerts_table.update().where(alerts_table.c.key == key, alerts_table.c.channel == channel).values(firing=firing, changed_at=time.time())
            )
            if updated.rowcount == 0:
                conn.execute(alerts_table.insert().values(key=key, channel=channel, firing=firing, changed_at=time.time()))

    def evaluate(self, conditions: Iterable[Condition], senders: list[Sender]) -> Evaluation:
        """Tell each channel about every condition whose state changed since it was last told."""
        result = Evaluation()
        for condition in conditions:
            for channel, send in senders:
                if condition.firing == self.told(condition.key, channel):
                    continue
                message = Message(condition, resolved=not condition.firing)
                try:
                    send(message)
                except AlertDeliveryError as exc:
                    result.failures.append(str(exc))
                    continue
                self._record(condition.key, channel, condition.firing)
                result.sent.append((channel, message))
        return result
