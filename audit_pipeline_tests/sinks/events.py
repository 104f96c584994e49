"""Events for sink tests: realistic synthetic ones, as the EventBatch a sink receives."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from audit_pipeline.core.jsontext import jsonb_text
from audit_pipeline.core.schema import ARROW_SCHEMA, COLUMNS
from audit_pipeline.sinks.base import EventBatch
from audit_pipeline.sources.synthetic import generate_events

UTC = dt.UTC


def synthetic(count: int, day: dt.date = dt.date(2024, 1, 15), seed: int = 7) -> list[dict[str, Any]]:
    return list(generate_events(day, count, seed=seed))


def recent(count: int, now: dt.datetime, seed: int = 7) -> list[dict[str, Any]]:
    """Synthetic events spread over the hour before ``now`` (inside Datadog's 18 h window)."""
    events = synthetic(count, seed=seed)
    for n, event in enumerate(events):
        event["created_at"] = now - dt.timedelta(minutes=60) + dt.timedelta(microseconds=n * 1_000_003)
    return events


def batch_of(events: list[dict[str, Any]]) -> EventBatch:
    rows = []
    for event in events:
        row = {c: event.get(c) for c in COLUMNS}
        metadata = event.get("metadata", {})
        row["metadata"] = metadata if isinstance(metadata, str) else jsonb_text(metadata)
        rows.append(row)
    return EventBatch(pa.RecordBatch.from_pylist(rows, schema=ARROW_SCHEMA))
