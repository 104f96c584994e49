"""A sink's ``schema:`` setting applied to its batches: the events' lines become OCSF, ECS or CIM documents.

The forwarding engine hands a sink the batch *after* the sink's privacy settings (so a masked
e-mail is masked in every field of every schema, and in the original kept inside the document);
the sink calls :func:`as_schema` first thing in ``send`` and builds its payload from the mapped
lines exactly as it does from the exported ones.  Positions, dead letters and event filters keep
working on the batch's columns, which do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import pyarrow as pa

from audit_pipeline.config.sections.ocsf import OcsfSettings
from audit_pipeline.formats.encoding import ndjson_line_offsets
from audit_pipeline.sinks.base import EventBatch

Schema = Literal["raw", "ocsf", "ecs", "cim"]
Encoder = Callable[[pa.RecordBatch, Sequence[bytes]], list[bytes]]


class MappedEventBatch(EventBatch):
    """An :class:`EventBatch` whose lines are documents of ``schema`` (slices and cut lines stay mapped)."""

    def __init__(self, batch: pa.RecordBatch, lines: Sequence[bytes], schema: str) -> None:
        super().__init__(batch)
        self.schema = schema
        data = b"".join(line + b"\n" for line in lines)
        self.__dict__["_ndjson"] = (memoryview(data), ndjson_line_offsets(data))

    def _carrying(self, batch: pa.RecordBatch, chunk: memoryview, offsets: Any) -> EventBatch:
        part = MappedEventBatch(batch, [], self.schema)
        part.__dict__["_ndjson"] = (chunk, offsets)
        return part

    def take(self, indices: Sequence[int]) -> EventBatch:
        return MappedEventBatch(self.batch.take(pa.array(indices, pa.int64())), [self.line(i) for i in indices], self.schema)


def encoder(schema: Schema, ocsf: OcsfSettings | None, where: str, *, ecs_original: bool = True) -> Encoder | None:
    """The batch encoder for a sink's ``schema`` (None for ``raw``); a bad ``ocsf`` table fails here, naming ``where``."""
    if schema == "raw":
        return None
    from audit_pipeline.schemas.ocsf import OcsfMapper

    mapper = OcsfMapper(ocsf, f"{where}.ocsf")
    if schema == "ocsf":
        return mapper.encode_batch
    if schema == "ecs":
        from audit_pipeline.schemas.ecs import EcsMapper

        return EcsMapper(original=ecs_original, ocsf=mapper).encode_batch
    from audit_pipeline.schemas.cim import CimMapper

    return CimMapper(mapper).encode_batch


def as_schema(events: EventBatch, schema: str, encode: Encoder | None) -> EventBatch:
    """``events`` with its lines mapped to ``schema`` (unchanged for ``raw`` or when already mapped)."""
    if encode is None or (isinstance(events, MappedEventBatch) and events.schema == schema):
        return events
    return MappedEventBatch(events.batch, encode(events.batch, list(events.lines())), schema)
