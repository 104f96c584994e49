"""What the Elasticsearch sink writes: the index template's mappings, daily index names and bulk bodies.

Kept apart from the sink's delivery logic (:mod:`.elasticsearch`): these are pure functions of the
events and the settings, which retention (template patterns) and the tests read on their own.  The bulk
body is built by Arrow kernels from the events' NDJSON lines as exported, with no per-event JSON encoding.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit_pipeline.core.isotime import from_epoch_micros
from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.sinks.base import EventBatch

#: Bump when the mappings change; a template with another version is replaced on first use.
TEMPLATE_VERSION = 1
_KEYWORD = {"type": "keyword", "ignore_above": 8191}  # 8191 chars stay under Lucene's 32 KB term limit


def index_mappings() -> dict[str, Any]:
    """Explicit mappings for the 14 columns.

    * ids, types, e-mails, countries: ``keyword`` (exact match, aggregations); longer than 8191
      characters is kept in ``_source`` but not indexed, rather than rejected.
    * ``created_at``: ``date_nanos``, because ``date`` rounds to milliseconds and the audit order
      is ``(created_at, id)`` at microseconds.
    * ``ip_address``: ``ip`` with ``ignore_malformed``, plus ``ip_address.keyword``.  PostgreSQL
      ``inet`` may hold a netmask (``10.0.0.0/24``), which an ``ip`` field rejects; such a value
      stays searchable as text in ``.keyword`` and the event is never refused for it.
    * ``metadata``: ``flattened``.  Its keys differ per event type and the same key may be a number
      in one event and text in another; dynamic object mapping would grow a field per key (the
      1,000-field limit) and reject conflicting events.  ``flattened`` indexes every leaf as a
      keyword under one field (``metadata.user_agent: ...``), at the cost of numeric range queries.
    """
    properties: dict[str, Any] = {name: dict(_KEYWORD) for name in COLUMNS}
    properties["created_at"] = {"type": "date_nanos"}
    properties["ip_address"] = {"type": "ip", "ignore_malformed": True, "fields": {"keyword": dict(_KEYWORD)}}
    properties["metadata"] = {"type": "flattened", "ignore_above": 8191}
    return {"dynamic": "false", "properties": properties}


def template_patterns(pattern: str) -> list[str]:
    """The index patterns the template covers: the literal part before the first strftime code, then ``*``."""
    head = pattern.split("%", 1)[0]
    return [head + "*"] if "%" in pattern else [pattern]


def _json_strings(column: pa.Array) -> pa.Array:
    """JSON string literals for ids (the same escaping as the NDJSON export)."""
    if pc.any(pc.match_substring_regex(column, r"[\x00-\x1f]")).as_py():
        import json

        return pa.array([json.dumps(v, ensure_ascii=False) for v in column.to_pylist()], pa.large_string())
    escaped = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
    quote = pa.scalar('"', pa.large_string())
    return pc.binary_join_element_wise(quote, escaped.cast(pa.large_string()), quote, pa.scalar("", pa.large_string()))


#: Room for the action line and separators beside an event in a bulk request.
ACTION_ROOM = 1_024
_DAILY_CODES = re.compile(r"%[Ymdyj%]")
_MICROS_PER_DAY = 86_400_000_000


def index_names(created_at: pa.Array, pattern: str) -> pa.Array:
    """The index of each event: ``pattern`` applied to its UTC ``created_at``.

    A pattern with day-level codes only (%Y %m %d %y %j) is formatted once per distinct day,
    not once per event (events arrive sorted, so a batch spans a day or two).
    """
    if _DAILY_CODES.sub("", pattern).count("%"):
        return pc.strftime(created_at, format=pattern).cast(pa.large_string())
    micros = created_at.cast(pa.int64()).to_numpy(zero_copy_only=False)
    days = np.floor_divide(micros, _MICROS_PER_DAY)
    distinct, positions = np.unique(days, return_inverse=True)
    names = pa.array([from_epoch_micros(int(d) * _MICROS_PER_DAY).strftime(pattern) for d in distinct], pa.large_string())
    return names.take(pa.array(positions.astype(np.int64)))


def bulk_body(events: EventBatch, index_pattern: str) -> memoryview:
    """``{"create":{"_index":...,"_id":...}}`` then the event's exported line, for every event.

    A view of the Arrow buffer the kernels wrote, sent as it is: a ``bytes`` copy would hold a
    second copy of every request in flight."""
    n = len(events)
    chunk, offsets = events.ndjson()
    lines = pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets.astype("int64")), pa.py_buffer(chunk)])
    indices = index_names(events.batch.column(COLUMNS.index("created_at")), index_pattern)
    ids = _json_strings(events.batch.column(COLUMNS.index("id")))
    pieces = ['{"create":{"_index":"', indices, '","_id":', ids, "}}\n", lines, ""]
    joined = pc.binary_join_element_wise(*[pa.scalar(p, pa.large_string()) if isinstance(p, str) else p for p in pieces])
    total = joined.buffers()[1]

    bounds = np.frombuffer(total, dtype=np.int64)
    start, end = int(bounds[joined.offset]), int(bounds[joined.offset + n])
    return memoryview(joined.buffers()[2])[start:end]
