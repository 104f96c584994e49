"""A watched condition and the message it becomes: what, which day or sink, and the link to look at."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Condition:
    """One thing that is either wrong now (``firing``) or fine; ``key`` names it across evaluations.

    ``key`` is stable (e.g. ``run:daily_export_job:2024-01-15`` or ``sink-lag:elasticsearch``): an alert is sent when a
    key starts firing and a "resolved" message when it stops, never twice for the same state.
    """

    key: str
    firing: bool
    #: What it is about, e.g. "daily_export_job failed for 2024-01-15".
    title: str
    #: The detail: the error's first line, the lag in seconds, the check's description.
    detail: str = ""
    #: Where to look (the run, the asset check, the sink's lag asset in the UI).
    link: str | None = None


@dataclass(frozen=True)
class Message:
    """What a channel sends: the condition and whether it started or cleared."""

    condition: Condition
    resolved: bool

    @property
    def subject(self) -> str:
        state = "RESOLVED" if self.resolved else "ALERT"
        return f"[audit_pipeline {state}] {self.condition.title}"

    @property
    def text(self) -> str:
        lines = [self.subject]
        if self.condition.detail and not self.resolved:
            lines.append(self.condition.detail)
        if self.condition.link:
            lines.append(self.condition.link)
        return "\n".join(lines)

    def as_json(self) -> bytes:
        """The webhook's body: stable keys, so a receiver can route on ``key`` and ``status``."""
        return json.dumps(
            {
                "type": "audit_pipeline.alert",
                "status": "resolved" if self.resolved else "firing",
                "key": self.condition.key,
                "title": self.condition.title,
                "detail": self.condition.detail,
                "link": self.condition.link,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode("utf-8")
