"""Dead letters: events a sink rejected for good, kept as NDJSON objects beside the exports.

Layout: ``deadletters/<sink>/date=YYYY-MM-DD/<first created_at µs>-<digest>.ndjson``, one
object per rejected part of a batch, one line per event::

    {"sink": "elasticsearch", "reason": "400 document_parsing_exception: ...",
     "dead_lettered_at": "2024-05-01T10:00:00Z", "event": {...the event as exported...}}

The key is derived from the rejected ids, so a batch replayed after a crash rewrites the same
object instead of adding a second copy.  Objects are written (atomically, see
:mod:`audit_pipeline.storage.object_store`) *before* the sink's position moves past the events: an event is
either acknowledged by the sink, or in a dead-letter object, or still ahead of the position.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pyarrow as pa

from audit_pipeline.core.errors import StorageError
from audit_pipeline.core.jsontext import jsonb_text, parse_exact
from audit_pipeline.core.layout import dead_letter_key, dead_letter_prefix
from audit_pipeline.core.redaction import redact
from audit_pipeline.core.schema import ARROW_SCHEMA, COLUMNS
from audit_pipeline.sinks.base import EventBatch
from audit_pipeline.storage.object_store import ObjectStore

CONTENT_TYPE = "application/x-ndjson"


@dataclass
class DeadLetterObject:
    key: str
    events: EventBatch
    reasons: list[str]
    #: True for events the sink accepted only cut down (kept whole here for the record, not replayed).
    delivered: bool = False


class DeadLetterStore:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def prefix(self, sink: str) -> str:
        return dead_letter_prefix(sink)

    def write(self, sink: str, events: EventBatch, reasons: list[str], *, delivered: bool = False) -> str:
        """Store rejected events with their reasons; returns the object key.

        ``delivered`` marks events the sink took only with fields cut (``"delivered": "truncated"``):
        kept whole for the record, never replayed.
        """
        if len(events) != len(reasons):
            raise ValueError("one reason per dead-lettered event")
        ids = events.ids
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
        first = events.batch.column(COLUMNS.index("created_at"))[0].as_py()
        key = dead_letter_key(sink, first, digest, truncated=delivered)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        head = (
            b'{"sink":'
            + json.dumps(sink).encode()
            + b',"dead_lettered_at":"'
            + now.encode()
            + b'",'
            + (b'"delivered":"truncated",' if delivered else b"")
            + b'"reason":'
        )
        lines = [
            head + json.dumps(redact(reason), ensure_ascii=False).encode() + b',"event":' + line + b"}\n"
            for reason, line in zip(reasons, events.lines(), strict=True)
        ]
        self.store.put_bytes(key, b"".join(lines), CONTENT_TYPE)
        return key

    def keys(self, sink: str) -> list[str]:
        prefix = self.prefix(sink)
        return [k for k in self.store.list(prefix.rstrip("/")) if k.startswith(prefix) and k.endswith(".ndjson")]

    def read(self, key: str) -> DeadLetterObject:
        data = self.store.read_bytes(key)
        records, reasons = [], []
        delivered = False
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                event = _event_from_line(line)
            except (orjson.JSONDecodeError, ValueError, KeyError) as exc:
                raise StorageError(f"dead-letter object {self.store.uri(key)} line {number} is not a dead-letter record ({exc}); fix or remove it") from None
            records.append(event)
            reasons.append(str(record.get("reason", "")))
            delivered = delivered or record.get("delivered") == "truncated"
        batch = pa.RecordBatch.from_pylist(records, schema=ARROW_SCHEMA)
        return DeadLetterObject(key, EventBatch(batch), reasons, delivered)

    def iter_objects(self, sink: str, delivered: bool | None = None) -> Iterator[DeadLetterObject]:
        """One object at a time (each holds at most one batch), oldest first; ``delivered`` selects
        the cut-down-but-delivered records (True), the rejected ones (False) or both (None)."""
        for key in self.keys(sink):
            if delivered is not None and key.endswith("-truncated.ndjson") != delivered:
                continue
            yield self.read(key)

    def rewrite(self, sink: str, obj: DeadLetterObject, keep: list[int], reasons: dict[int, str]) -> None:
        """Keep only the events still rejected (with their new reasons), or delete the object."""
        if not keep:
            self.store.delete(obj.key)
            return
        remaining = obj.events.take(keep)
        new_key = self.write(sink, remaining, [reasons.get(i) or obj.reasons[i] for i in keep])
        if new_key != obj.key:
            self.store.delete(obj.key)

    def count(self, sink: str) -> int:
        return sum(len(obj.events) for obj in self.iter_objects(sink))


def _event_from_line(line: bytes) -> dict[str, object]:
    """The ``event`` of a record back in the canonical columns; metadata returns to jsonb text exactly."""
    record = parse_exact(line.decode("utf-8"))
    event = record["event"]
    row: dict[str, object] = {}
    for name in COLUMNS:
        value = event[name]
        if name == "created_at":
            row[name] = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
        elif name == "metadata":
            row[name] = jsonb_text(value)
        else:
            row[name] = value
    return row
