"""HelloJohn API events → rows of the canonical schema, exactly as PostgreSQL would print them.

The list endpoint and the export stream return each event as a JSON object.  Two shapes are accepted: the
table's flat columns (``actor_id``, ``actor_email``, ...), and the nested ``actor``/``resource``
objects of HelloJohn's "Querying Audit Logs" page; a flat key wins when both are present.
Fields the table does not have (``user_agent`` at the top level, ``meta``...) are ignored.
A nullable column that is absent is NULL, as JSON APIs omit nulls; a NOT NULL column
(``id``, ``type``, ``result``, ``created_at``, ``metadata``) that is absent, or any value of
the wrong JSON type, is an error naming the event and the field.

``metadata`` is re-printed in PostgreSQL's jsonb text form (:mod:`audit_pipeline.core.jsontext`):
keys in jsonb order, numbers exactly as sent.  Most metadata holds no fractional number: it is
re-ordered and printed by one C-level ``json.dumps``.  A value holding a float (a parser that
reads numbers as binary floats, such as orjson, was used) raises :class:`InexactNumber`, so that
the caller parses the event again keeping every digit (``Decimal``), which prints exactly.  ``created_at`` becomes integer microseconds
since the epoch (UTC), which is what the Arrow column holds and what orders events.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

import pyarrow as pa

from audit_pipeline.core.errors import SourceError
from audit_pipeline.core.isotime import epoch_micros as micros
from audit_pipeline.core.isotime import parse_instant
from audit_pipeline.core.jsontext import jsonb_text
from audit_pipeline.core.schema import ARROW_SCHEMA, COLUMNS, REQUIRED

_NESTED = {
    "actor_id": ("actor", "id"),
    "actor_email": ("actor", "email"),
    "actor_type": ("actor", "type"),
    "resource_id": ("resource", "id"),
    "resource_type": ("resource", "type"),
}
_CREATED_AT = COLUMNS.index("created_at")
_TEXT_COLUMNS = COLUMNS[:_CREATED_AT]  # id ... result; created_at and metadata come last
assert COLUMNS[_CREATED_AT:] == ("created_at", "metadata")
_MISSING = object()
#: The common spelling (``2024-01-15T14:23:05.123456Z``), which ``fromisoformat`` reads exactly.
_PLAIN_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")


class InexactNumber(Exception):
    """The event was parsed with binary floats; parse it again with ``Decimal`` to keep every digit."""


class _NeedsSlowPath(Exception):
    pass


def _key_order(key: str) -> tuple[int, bytes]:
    encoded = key.encode("utf-8", "surrogatepass")
    return (len(encoded), encoded)


def _jsonb_ordered(value: Any) -> Any:
    """``value`` with every object's keys in jsonb order; floats and Decimals are left to the exact printer."""
    kind = type(value)
    if kind is dict:
        return {key: _jsonb_ordered(value[key]) for key in sorted(value, key=_key_order)}
    if kind is list:
        return [_jsonb_ordered(item) for item in value]
    if kind is float:
        raise InexactNumber
    if kind is Decimal:
        raise _NeedsSlowPath
    return value


def metadata_text(value: Any) -> str:
    """``metadata`` as PostgreSQL prints the jsonb value; :class:`InexactNumber` if it holds a binary float."""
    try:
        return json.dumps(_jsonb_ordered(value), ensure_ascii=False, separators=(", ", ": "))
    except _NeedsSlowPath:
        return jsonb_text(value)


def _label(event: Any, index: int) -> str:
    event_id = event.get("id") if isinstance(event, dict) else None
    return f"event {event_id!r}" if isinstance(event_id, str) else f"event #{index} of the response"


def _instant(value: Any, event: Any, index: int) -> int:
    if isinstance(value, str):
        try:
            if _PLAIN_INSTANT.fullmatch(value):
                return micros(dt.datetime.fromisoformat(value))
            return micros(parse_instant(value))
        except ValueError as exc:
            raise SourceError(f"the HelloJohn API returned {_label(event, index)} with an unusable created_at: {exc}") from None
    if value is None or value is _MISSING:
        raise SourceError(f"the HelloJohn API returned {_label(event, index)} without 'created_at', which every audit event has")
    raise SourceError(f"the HelloJohn API returned {_label(event, index)} with created_at {value!r}; expected an ISO 8601 string")


def event_row(event: Any, index: int) -> list[Any]:
    """One API event as the 14 column values (``created_at`` in microseconds, ``metadata`` jsonb text)."""
    if not isinstance(event, dict):
        raise SourceError(f"the HelloJohn API returned {_label(event, index)} as {type(event).__name__}, expected a JSON object")
    get = event.get
    row: list[Any] = []
    for column in _TEXT_COLUMNS:
        value = get(column, _MISSING)
        if value is _MISSING and column in _NESTED:
            parent_key, key = _NESTED[column]
            parent = get(parent_key)
            value = parent.get(key, _MISSING) if isinstance(parent, dict) else _MISSING
        if type(value) is str:
            row.append(value)
        elif value is None or value is _MISSING:
            if column in REQUIRED:
                raise SourceError(f"the HelloJohn API returned {_label(event, index)} without '{column}', which every audit event has")
            row.append(None)
        else:
            raise SourceError(
                f"the HelloJohn API returned {_label(event, index)} with {column} = {value!r} ({type(value).__name__}); expected a string or null"
            )
    if not row[0]:
        raise SourceError(f"the HelloJohn API returned {_label(event, index)} with an empty id")
    row.append(_instant(get("created_at", _MISSING), event, index))
    metadata = get("metadata", _MISSING)
    if metadata is _MISSING:
        raise SourceError(f"the HelloJohn API returned {_label(event, index)} without 'metadata', which every audit event has")
    row.append(metadata_text(metadata))  # JSON null stays the jsonb value null
    return row


def row_key(row: list[Any]) -> tuple[int, bytes]:
    """The export order: ``created_at``, then the id compared bytewise (as ``COLLATE "C"``)."""
    return row[_CREATED_AT], row[0].encode("utf-8", "surrogatepass")


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
        try:
            arrays = [
                pa.array(values, type=pa.int64()).cast(field.type) if field.name == "created_at" else pa.array(values, type=field.type)
                for values, field in zip(self._columns, ARROW_SCHEMA, strict=True)
            ]
        except UnicodeEncodeError:
            raise SourceError(self._invalid_text()) from None
        self._columns = [[] for _ in COLUMNS]
        return pa.RecordBatch.from_arrays(arrays, schema=ARROW_SCHEMA)

    def _invalid_text(self) -> str:
        """Which event holds text that is not valid Unicode (a lone surrogate escape such as \\ud800)."""
        for name, values in zip(COLUMNS, self._columns, strict=True):
            for row, value in enumerate(values):
                if isinstance(value, str):
                    try:
                        value.encode("utf-8")
                    except UnicodeEncodeError:
                        event_id = self._columns[0][row]
                        return f"the HelloJohn API returned event {event_id!r} whose {name} is not valid Unicode (a lone surrogate escape)"
        return "the HelloJohn API returned text that is not valid Unicode"


# micros and from_micros: isotime's epoch_micros and from_epoch_micros, under the names the API modules use
__all__ = ["InexactNumber", "RowBuffer", "event_row", "metadata_text", "row_key"]
