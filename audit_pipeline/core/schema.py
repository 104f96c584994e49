"""The one definition of an exported audit event: column names, their order and types.

Every writer, source and sink imports from here, so the order
``id,type,...,created_at,metadata`` can never drift between formats.
"""

from __future__ import annotations

import pyarrow as pa

COLUMNS: tuple[str, ...] = (
    "id",
    "type",
    "actor_id",
    "actor_email",
    "actor_type",
    "resource_id",
    "resource_type",
    "tenant_id",
    "organization_id",
    "ip_address",
    "country",
    "result",
    "created_at",
    "metadata",
)

#: Columns the source table declares NOT NULL; a NULL there is corrupt input.
REQUIRED: frozenset[str] = frozenset({"id", "type", "result", "created_at", "metadata"})

#: Low-cardinality columns, dictionary-encoded in Parquet (a handful of distinct values per day).
DICTIONARY_COLUMNS: tuple[str, ...] = ("type", "actor_type", "resource_type", "tenant_id", "organization_id", "country", "result")

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

#: ``metadata`` travels as JSON text so that numbers keep every digit (no float round trip).
ARROW_SCHEMA: pa.Schema = pa.schema(
    [pa.field(name, TIMESTAMP_TYPE if name == "created_at" else pa.string(), nullable=name not in REQUIRED) for name in COLUMNS]
)

DESCRIPTIONS: dict[str, str] = {
    "id": "Opaque unique event id, e.g. alog_01HV3K9Q...",
    "type": "Dotted event name, e.g. user.login",
    "actor_id": "Who acted; NULL for system events",
    "actor_email": "Actor's e-mail at the time of the event",
    "actor_type": "user | admin | api_key | system",
    "resource_id": "What was acted on",
    "resource_type": "user | session | organization | ...",
    "tenant_id": "Tenant the event belongs to",
    "organization_id": "Organization the event belongs to",
    "ip_address": "Client IPv4/IPv6 address, PostgreSQL inet text (netmask kept when not /32 or /128)",
    "country": "ISO 3166-1 alpha-2",
    "result": "success | failure",
    "created_at": "UTC time of the event, microseconds",
    "metadata": "Free-form JSON object (PostgreSQL jsonb text form)",
}


def empty_batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=ARROW_SCHEMA)


def conform(batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch:
    """Cast a source batch to the canonical schema (names, order, types) or fail naming the column."""
    names = batch.schema.names
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ValueError(f"source batch lacks column(s) {', '.join(missing)}; the audit_logs table must have all of {', '.join(COLUMNS)}")
    arrays = []
    for field in ARROW_SCHEMA:
        column = batch.column(names.index(field.name))
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if column.type != field.type:
            column = column.cast(field.type)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=ARROW_SCHEMA)
