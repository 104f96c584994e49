"""Events larger than a sink takes in one piece: delivered with their largest fields cut, and marked.

Datadog keeps at most 1 MB per log, Splunk HEC refuses a request above its
``max_content_length``, Elasticsearch one above ``http.max_content_length``.  Rather than keep such
an event from the SIEM (the security team must still see that it happened), the sink sends a
copy whose largest text values are shortened until it fits, with three fields added:

* ``truncated: true``;
* ``truncated_fields``: the dotted names of the values that were cut (``metadata.blob``);
* ``event_sha256``: the SHA-256 of the whole event as exported (its NDJSON line), so the copy
  can be matched with the original, which the engine keeps in the dead letters with the reason.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def fit(line: bytes, limit: int) -> tuple[bytes, list[str]] | None:
    """The event's JSON object cut to at most ``limit`` bytes, and the names of the cut fields;
    None when even the event without any text value would not fit."""
    event: dict[str, Any] = json.loads(line)
    digest = hashlib.sha256(line).hexdigest()
    cut: list[str] = []
    while True:
        encoded = _encode(event, cut, digest)
        excess = len(encoded) - limit
        if excess <= 0:
            return encoded, cut
        leaves = sorted(_text_leaves(event), key=lambda leaf: len(leaf[2].encode()), reverse=True)
        leaves = [leaf for leaf in leaves if leaf[2]]
        if not leaves:
            return None
        name, (container, key), value = leaves[0]
        raw = value.encode()
        keep = max(0, len(raw) - excess - len(name) - 8)
        container[key] = raw[:keep].decode("utf-8", errors="ignore")
        if name not in cut:
            cut.append(name)


def _encode(event: dict[str, Any], cut: list[str], digest: str) -> bytes:
    marked = {**event, "truncated": True, "truncated_fields": cut, "event_sha256": digest}
    return json.dumps(marked, ensure_ascii=False, separators=(",", ":")).encode()


def _text_leaves(value: Any, prefix: str = "") -> list[tuple[str, tuple[Any, Any], str]]:
    """Every text value with its dotted name and where it lives (to cut it in place)."""
    found: list[tuple[str, tuple[Any, Any], str]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(item, str):
            found.append((name, (value, key), item))
        elif isinstance(item, dict | list):
            found.extend(_text_leaves(item, name))
    return found


def reason(sink: str, limit_text: str, size: int, cut: list[str]) -> str:
    """The dead-letter reason for an event delivered cut down."""
    return (
        f"{size:,} bytes, over {sink}'s {limit_text}: delivered with {', '.join(cut) or 'nothing'} cut "
        "(marked truncated: true, truncated_fields, event_sha256); this record holds the whole event"
    )
