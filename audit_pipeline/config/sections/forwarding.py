"""``forwarding:`` (the engine's knobs, for every sink) and the keys every ``sinks.<name>`` may carry."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from audit_pipeline.config.sections.privacy import PrivacySettings


class RetrySettings(BaseModel):
    """Exponential backoff with full jitter; a pass gives up on a batch after ``give_up_seconds``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_seconds: float = Field(default=1.0, gt=0, le=600)
    max_seconds: float = Field(default=30.0, gt=0, le=3600)
    #: How long one batch may keep failing before the pass stops, leaving the position where it is.
    give_up_seconds: float = Field(default=300.0, ge=0, le=86_400)

    @model_validator(mode="after")
    def _ordered(self) -> RetrySettings:
        if self.max_seconds < self.initial_seconds:
            raise ValueError("max_seconds must be at least initial_seconds")
        return self


class ForwardingSettings(BaseModel):
    """The ``forwarding:`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Only events older than this (database clock) are forwarded; covers commit latency and
    #: timestamps an application takes just before it begins its transaction (what commits later
    #: behind the position is delivered by the late-commit sweep).
    settle_seconds: float = Field(default=0.5, ge=0, le=86_400)
    #: Also hold back behind the oldest open transaction that has written (needs pg_read_all_stats).
    watch_open_transactions: bool = True
    #: Largest batch handed to a sink; a sink may ask for smaller ones (count and bytes).
    batch_events: int = Field(default=5_000, ge=1, le=100_000)
    #: Rows per source query (a keyset window, streamed in Arrow batches: memory does not grow with it).
    read_events: int = Field(default=1_000_000, ge=1, le=100_000_000)
    #: Seconds behind the position re-checked every pass for events committed late (``15m``, ``900``; 0 = off).
    late_window: float = Field(default=900.0, ge=0, le=7 * 86_400)
    #: Catch-up speed limit per sink, events per second; unset = as fast as the sink takes them.
    max_events_per_second: float | None = Field(default=None, gt=0)
    #: Longest wait between looks for new events when following (``forward`` without ``--once``): a one-row
    #: probe runs at most 0.05 s after a pass that delivered, doubling while nothing comes, up to this.
    poll_seconds: float = Field(default=1.0, gt=0, le=3600)
    #: How often a follower also runs the late-commit sweep (every ``--once`` pass and Dagster run does).
    sweep_seconds: float = Field(default=5.0, gt=0, le=3600)
    #: A forwarder holds a per-sink lease in the state database for this long, renewed every batch.
    lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    #: How often each Dagster sensor looks for pending events.
    sensor_interval_seconds: int = Field(default=30, ge=5, le=86_400)
    #: The lag check on each sink's lag asset fails when the oldest undelivered event is older than this (``10m``, ``600``).
    max_lag_seconds: float = Field(default=600.0, gt=0, le=7 * 86_400)
    retry: RetrySettings = RetrySettings()

    @field_validator("late_window", "max_lag_seconds", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_seconds(value)


#: ``start`` as written: ``earliest``, ``now`` or a UTC day ``YYYY-MM-DD``.
StartSpec = Literal["earliest", "now"] | dt.date


class SinkForwarding(BaseModel):
    """Keys any ``sinks.<name>`` section may carry in addition to the sink's own settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Where a sink with no position yet begins; ignored once it has a position.
    start: StartSpec = "now"
    #: Overrides ``forwarding.max_events_per_second`` for this sink.
    max_events_per_second: float | None = Field(default=None, gt=0)
    #: Set false to keep a sink configured but not forwarded (no sensor, ``forward`` refuses).
    enabled: bool = True
    #: Requests in flight at once; unset = the sink's default (Elasticsearch 2, others 1, which keeps order).
    concurrency: int | None = Field(default=None, ge=1, le=32)
    #: What this sink may see: fields dropped, hashed or masked (audit_pipeline.sinks.privacy).
    privacy: PrivacySettings | None = None

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            raise ValueError("start takes a day (YYYY-MM-DD), 'earliest' or 'now', not a time")
        if isinstance(value, dt.date) or value in ("earliest", "now"):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise ValueError(f"start must be 'earliest', 'now' or a day as YYYY-MM-DD, got {value!r}")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_seconds(value: Any) -> Any:
    """``900``, ``"900s"``, ``"15m"``, ``"1h"`` as seconds; anything else is left for the model to refuse."""
    if isinstance(value, str):
        text = value.strip().lower()
        unit = _UNITS.get(text[-1:]) if text else None
        number = text[:-1] if unit else text
        try:
            return float(number) * (unit or 1)
        except ValueError:
            raise ValueError(f"must be seconds or a duration such as 15m, 900s or 1h, got {value!r}") from None
    return value


COMMON_SINK_KEYS = frozenset(SinkForwarding.model_fields)
