"""JSON text in PostgreSQL's ``jsonb`` output form, for sources that do not hand us jsonb text.

The exports carry ``metadata`` exactly as PostgreSQL prints a ``jsonb`` value, so that a day
exported from the demo database or the HelloJohn API matches one exported from PostgreSQL:
keys ordered by length then bytes, duplicate keys collapsed (last wins), ``", "`` and ``": "``
separators, non-ASCII kept, numbers in plain decimal notation (``1e5`` prints as ``100000``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def _key_order(key: str) -> tuple[int, bytes]:
    encoded = key.encode("utf-8")
    return (len(encoded), encoded)


def _dump(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{")
        for i, key in enumerate(sorted(value, key=_key_order)):
            if i:
                out.append(", ")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(": ")
            _dump(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(", ")
            _dump(item, out)
        out.append("]")
    elif isinstance(value, Decimal):
        out.append(format(value, "f"))
    elif isinstance(value, float):
        out.append(format(Decimal(repr(value)), "f"))
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    else:
        out.append(json.dumps(value, ensure_ascii=False))


def jsonb_text(value: Any) -> str:
    """Render a parsed JSON value the way PostgreSQL prints ``jsonb``."""
    out: list[str] = []
    _dump(value, out)
    return "".join(out)


def parse_exact(text: str) -> Any:
    """Parse JSON keeping every digit of every number (floats as :class:`Decimal`)."""
    return json.loads(text, parse_float=Decimal)


def normalize_json_text(text: str) -> str:
    """JSON text from any producer → jsonb text form; raises ValueError on invalid JSON."""
    return jsonb_text(parse_exact(text))
