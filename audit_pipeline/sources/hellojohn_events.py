"""HelloJohn API events → rows of the canonical schema, exactly as PostgreSQL would print them.

The list endpoint returns each event as a JSON object.  Two shapes are accepted: the
table's flat columns (``actor_id``, ``actor_email``, ...), and the nested ``actor``/``resource``
objects of HelloJohn's "Querying Audit Logs" page; a flat key wins when both are present.
Fields the table does not have (``user_agent`` at the top level, ``meta``...) are ignored.
A nullable column that is absent is NULL, as JSON APIs omit nulls; a NOT NULL column
(``id``, ``type``, ``result``, ``created_at``, ``metadata``) that is absent, or any value of
the wrong JSON type, is an error naming the event and the field.

``metadata`` is re-printed in PostgreSQL's jsonb text form (:mod:`audit_pipeline.jsontext`):
keys in jsonb order, numbers exactly as sent.  ``created_at`` becomes integer microseconds
since the epoch (UTC), which is what the Arrow column holds and what orders events.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from audit_pipeline.errors import SourceError
from audit_pipeline.isotime import parse_instant
from audit_pipeline.jsontext import jsonb_text
from audit_pipeline.schema import ARROW_SCHEMA, COLUMNS, REQUIRED

_NESTED = {
    "actor_id": ("actor", "id"),
    "actor_email": ("actor", "email"),
    "actor_type": ("actor", "type"),
    "resource_id": ("resource", "id"),
    "resource_type": ("resource", "type"),
}
_CREATED_AT = COLUMNS.index("created_at")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _label(event: Any, index: int) -> str:
    event_id = event.get("id") if isinstance(event, dict) else None
    return f"event {event_id!r}" if isinstance(event_id, str) else f"event #{index} of the page"


def _lookup(event: dict[str, Any], column: str) -> tuple[bool, Any]:
    if column in event:
        return True, event[column]
    nested = _NESTED.get(column)
    if nested is not None:
        parent = event.get(nested[0])
        if isinstance(parent, dict) and nested[1] in parent:
            return True, parent[nested[1]]
    return False, None


def _checked_text(value: str, label: str, column: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SourceError(f"the HelloJohn API returned {label} whose {column} is not valid Unicode (a lone surrogate escape)") from None
    return value


def event_row(event: Any, index: int) -> list[Any]:
    """One API event as the 14 column values (``created_at`` in microseconds, ``metadata`` jsonb text)."""
    label = _label(event, index)
    if not isinstance(event, dict):
        raise SourceError(f"the HelloJohn API returned {label} as {type(event).__name__}, expected a JSON object")
    row: list[Any] = []
    for column in COLUMNS:
        present, value = _lookup(event, column)
        if column in REQUIRED and (not present or (value is None and column != "metadata")):
            raise SourceError(f"the HelloJohn API returned {label} without '{column}', which every audit event has")
        if column == "created_at":
            if not isinstance(value, str):
                raise SourceError(f"the HelloJohn API returned {label} with created_at {value!r}; expected an ISO 8601 string")
            try:
                row.append(micros(parse_instant(value)))
            except ValueError as exc:
                raise SourceError(f"the HelloJohn API returned {label} with an unusable created_at: {exc}") from None
        elif column == "metadata":
            row.append(_checked_text(jsonb_text(value), label, column))
        elif value is None:
            row.append(None)
        elif isinstance(value, str):
            row.append(_checked_text(value, label, column))
        else:
            raise SourceError(f"the HelloJohn API returned {label} with {column} = {value!r} ({type(value).__name__}); expected a string or null")
    if row[0] == "":
        raise SourceError(f"the HelloJohn API returned {label} with an empty id")
    return row


def micros(value: dt.datetime) -> int:
    """Microseconds since the epoch, exactly (no float on the way)."""
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


def from_micros(value: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=value)


def row_key(row: list[Any]) -> tuple[int, bytes]:
    """The export order: ``created_at``, then the id compared bytewise (as ``COLLATE "C"``)."""
    return row[_CREATED_AT], row[0].encode("utf-8")


class RowBuffer:
    """Rows gathered column-wise until there are enough for one Arrow batch."""

    def __init__(self) -> None:
        self._columns: list[list[Any]] = [[] for _ in COLUMNS]

    def __len__(self) -> int:
        return len(self._columns[0])

    def append(self, row: list[Any]) -> None:
        for column, value in zip(self._columns, row, strict=True):
            column.append(value)

    def take_batch(self) -> pa.RecordBatch:
        arrays = [
            pa.array(values, type=pa.int64()).cast(field.type) if field.name == "created_at" else pa.array(values, type=field.type)
            for values, field in zip(self._columns, ARROW_SCHEMA, strict=True)
        ]
        self._columns = [[] for _ in COLUMNS]
        return pa.RecordBatch.from_arrays(arrays, schema=ARROW_SCHEMA)
