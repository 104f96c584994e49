"""The small interface every sink implements; shared machinery (batching, retries, dead
letters, positions, lag) lives in the forwarding engine, not here.

A sink receives an :class:`EventBatch` in ``(created_at, id)`` order and answers, per event,
whether it was delivered, may be retried, or was rejected for good.  The engine advances
the sink's position only past events that are delivered or dead-lettered.
"""

from __future__ import annotations

import abc
import datetime as dt
import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson
import pyarrow as pa

from audit_pipeline.core.redaction import redact
from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.formats.encoding import encode_ndjson_lines, ndjson_line_offsets


class EventBatch:
    """A run of events, with their canonical NDJSON lines computed once, columnar.

    ``line(i)`` is event *i* exactly as the NDJSON export prints it (no trailing newline);
    sinks that need JSON build their payloads from these bytes instead of re-encoding.
    """

    def __init__(self, batch: pa.RecordBatch) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return int(self.batch.num_rows)

    @cached_property
    def _ndjson(self) -> tuple[memoryview, Any]:
        offsets, chunk = encode_ndjson_lines(self.batch)  # the encoder knows every line's start: no newline scan
        return chunk, offsets

    def ndjson(self) -> tuple[memoryview, Any]:
        """The batch's NDJSON as one chunk (every line ends in ``\\n``) and the line start offsets
        (``len(self) + 1`` of them): sinks that concatenate lines use it without per-event copies."""
        return self._ndjson

    def _carrying(self, batch: pa.RecordBatch, chunk: memoryview, offsets: Any) -> EventBatch:
        """A batch of ``batch``'s events whose lines are ``chunk`` (a subclass returns its own kind)."""
        part = EventBatch(batch)
        part.__dict__["_ndjson"] = (chunk, offsets)
        return part

    def slice(self, start: int, stop: int) -> EventBatch:
        """Events ``start..stop-1``, sharing this batch's NDJSON instead of encoding it again."""
        chunk, offsets = self._ndjson
        first = int(offsets[start])
        return self._carrying(self.batch.slice(start, stop - start), chunk[first : int(offsets[stop])], offsets[start : stop + 1] - first)

    def with_line(self, line: bytes) -> EventBatch:
        """This one-event batch carrying ``line`` as its JSON (an event cut to fit a sink's limit)."""
        if len(self) != 1:
            raise ValueError("with_line applies to a batch of one event")
        data = line + b"\n"
        return self._carrying(self.batch, memoryview(data), ndjson_line_offsets(data))

    def line(self, i: int) -> bytes:
        chunk, offsets = self._ndjson
        return bytes(chunk[offsets[i] : offsets[i + 1] - 1])

    def lines(self) -> Iterator[bytes]:
        chunk, offsets = self._ndjson
        for i in range(len(self)):
            yield bytes(chunk[offsets[i] : offsets[i + 1] - 1])

    def event(self, i: int) -> dict[str, Any]:
        """Event *i* as a dict in column order (``metadata`` a nested object; big ints kept exact)."""
        value: dict[str, Any] = orjson.loads(self.line(i)) if _orjson_exact(self.line(i)) else _json_exact(self.line(i))
        return value

    @cached_property
    def ids(self) -> list[str]:
        return list(self.batch.column(COLUMNS.index("id")).to_pylist())

    @cached_property
    def created_at(self) -> list[dt.datetime]:
        return list(self.batch.column(COLUMNS.index("created_at")).to_pylist())

    @cached_property
    def types(self) -> list[str]:
        return list(self.batch.column(COLUMNS.index("type")).to_pylist())

    def take(self, indices: Sequence[int]) -> EventBatch:
        return EventBatch(self.batch.take(pa.array(indices, pa.int64())))


def _orjson_exact(line: bytes) -> bool:
    # orjson rejects integers beyond 64 bits; those lines take the stdlib path below.
    try:
        orjson.loads(line)
        return True
    except orjson.JSONDecodeError:
        return False


def _json_exact(line: bytes) -> dict[str, Any]:
    import json
    from decimal import Decimal

    value: dict[str, Any] = json.loads(line, parse_float=Decimal)
    return value


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # acknowledged by the sink (including "already there", e.g. ES 409)
    RETRY = "retry"  # transient: try again later (429, 5xx, timeouts)
    REJECTED = "rejected"  # permanent for this event: goes to the dead letters with the reason


@dataclass
class DeliveryReport:
    """Per-event outcome of one ``send``; indices refer to the batch that was sent."""

    outcomes: list[Outcome]
    reasons: dict[int, str] = field(default_factory=dict)
    #: Seconds the sink asked us to wait before retrying (Retry-After), if any.
    retry_after: float | None = None
    #: Delivered events whose largest fields were cut to the sink's per-event limit: index → why.
    truncated: dict[int, str] = field(default_factory=dict)
    #: The real failure behind this send's retries (connection refused, a 503...), for the stop message.
    failure: str | None = None

    def __post_init__(self) -> None:
        self.reasons = {i: redact(r) for i, r in self.reasons.items()}

    @classmethod
    def all(cls, n: int, outcome: Outcome, reason: str | None = None, retry_after: float | None = None) -> DeliveryReport:
        failure = reason if outcome is Outcome.RETRY else None
        return cls([outcome] * n, {i: reason for i in range(n)} if reason else {}, retry_after, failure=failure)

    def indices(self, outcome: Outcome) -> list[int]:
        return [i for i, o in enumerate(self.outcomes) if o is outcome]


class SinkFailure(Exception):
    """The sink as a whole cannot take events (bad credentials, 401/403, webhook gone);
    the message names the setting to fix and never contains a secret (it is redacted here)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class Sink(abc.ABC):
    """One destination. Implementations are small: build a request, read the answer per event."""

    #: The sink's name as used on the command line and in positions, e.g. ``elasticsearch`` or ``webhook:SIEM``.
    name: str
    #: Largest batch the engine should hand over (count); the engine also honours ``max_batch_bytes``.
    max_batch_events: int = 1_000
    max_batch_bytes: int = 5_000_000
    #: Requests in flight at once unless ``sinks.<name>.concurrency`` says otherwise; 1 keeps the sink's order.
    default_concurrency: int = 1

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """One-time setup before the first send (e.g. install an index template)."""

    def accepts(self, event_type: str) -> bool:
        """Whether this sink wants an event of this type (webhook event filters); others are skipped as delivered."""
        return True

    @abc.abstractmethod
    def send(self, events: EventBatch) -> DeliveryReport:
        """Deliver the events; never raise for per-event problems, report them. Raise :class:`SinkFailure` only when the sink is unusable.

        Called from several threads at once when ``concurrency`` is above 1: keep per-call state local.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
