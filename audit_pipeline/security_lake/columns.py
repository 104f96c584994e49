"""The Parquet schema of each OCSF class, fixed in code: every object of a class has the same columns.

Why explicit: inferring a schema from a day's events gives a day without IPv6 addresses or without
``status_detail`` a different table, and Security Lake's Glue table (one per custom source) expects one
schema.  So every attribute the mapping (:mod:`audit_pipeline.schemas.ocsf`) can write for a class is a
column here, OCSF's nested objects as Parquet structs, arrays as lists; an attribute an event does not
have is NULL.  Types follow OCSF: ``integer_t`` → int32, ``long_t``/``timestamp_t`` → int64,
``boolean_t`` → bool, the string types → string (the tests compare them with the compiled schema).

``unmapped`` holds the whole HelloJohn event as a struct of its 14 columns (``created_at`` as exported,
``metadata`` as its JSON text): fixed too, and queryable as ``unmapped.actor_email`` in Athena.
"""

from __future__ import annotations

import pyarrow as pa

from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.schemas import ocsf_table as table

_S, _I, _L = pa.string(), pa.int32(), pa.int64()

PRODUCT = pa.struct([("name", _S), ("vendor_name", _S)])
METADATA = pa.struct(
    [
        ("version", _S),
        ("product", PRODUCT),
        ("uid", _S),
        ("original_time", _S),
        ("log_name", _S),
        ("tenant_uid", _S),
        ("profiles", pa.list_(_S)),
    ]
)
USER = pa.struct([("uid", _S), ("name", _S), ("email_addr", _S), ("uid_alt", _S), ("domain", _S), ("type_id", _I), ("type", _S)])
ACTOR = pa.struct([("user", USER)])
SRC_ENDPOINT = pa.struct([("ip", _S), ("location", pa.struct([("country", _S)]))])
NAMED = pa.struct([("uid", _S), ("type", _S), ("name", _S)])
UNMAPPED = pa.struct([(name, _S) for name in COLUMNS])

#: Attributes every event of every class has (never NULL), then the optional common ones.
_REQUIRED = [
    ("activity_id", _I),
    ("activity_name", _S),
    ("category_uid", _I),
    ("category_name", _S),
    ("class_uid", _I),
    ("class_name", _S),
    ("type_uid", _L),
    ("type_name", _S),
    ("severity_id", _I),
    ("severity", _S),
    ("status_id", _I),
    ("status", _S),
    ("time", _L),
    ("timezone_offset", _I),
    ("message", _S),
    ("metadata", METADATA),
]
_OPTIONAL = [("status_detail", _S), ("actor", ACTOR)]

#: Class → its own attributes, in column order.
_CLASS_FIELDS: dict[int, list[tuple[str, pa.DataType, bool]]] = {
    table.AUTHENTICATION: [
        ("user", USER, False),
        ("service", pa.struct([("name", _S)]), False),
        ("session", pa.struct([("uid", _S)]), True),
        ("is_mfa", pa.bool_(), True),
    ],
    table.ACCOUNT_CHANGE: [("user", USER, False)],
    table.USER_ACCESS_MANAGEMENT: [("user", USER, False), ("privileges", pa.list_(_S), False)],
    table.GROUP_MANAGEMENT: [("user", USER, False), ("group", NAMED, False)],
    table.ENTITY_MANAGEMENT: [("entity", NAMED, False)],
}


def class_schema(class_uid: int, version: str) -> pa.Schema:
    """The Parquet schema of one class's objects in one OCSF version (``src_endpoint`` where the version defines it)."""
    fields = [pa.field(name, kind, nullable=False) for name, kind in _REQUIRED]
    fields += [pa.field(name, kind) for name, kind in _OPTIONAL]
    fields += [pa.field(name, kind, nullable=nullable) for name, kind, nullable in _CLASS_FIELDS[class_uid]]
    if class_uid in table.SRC_ENDPOINT_CLASSES[version]:
        fields.append(pa.field("src_endpoint", SRC_ENDPOINT))
    fields.append(pa.field("unmapped", UNMAPPED, nullable=False))
    return pa.schema(fields, metadata={"ocsf.version": version, "ocsf.class_uid": str(class_uid)})


def mapped_fields(class_uid: int, version: str) -> frozenset[str]:
    """The top-level attributes a mapped event of this class may carry (all but ``unmapped``, which is built from the columns)."""
    return frozenset(class_schema(class_uid, version).names) - {"unmapped"}
