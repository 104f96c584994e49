"""The paged list, ``GET /v1/audit-logs?from=…&to=…&limit=200&cursor=…``, as HelloJohn's nightly script reads it.

Each page is ``{"data": [...], "meta": {"cursor": ...}}``; the cursor is absent or null on the
last page.  The cursor advances only after a page has been received, parsed and accepted; a
page that fails (429, 5xx, a dropped connection) is asked for again with the same cursor, so a
retry can neither skip nor repeat a page.  One request per 200 events: the fallback for
servers without the export endpoint (``source.api_read: list``), and the cheapest way to read
a handful of events (``limit``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from audit_pipeline.core.errors import SourceError
from audit_pipeline.sources.hellojohn_events import event_row, row_key
from audit_pipeline.sources.hellojohn_http import HelloJohnHttp, Transient
from audit_pipeline.sources.hellojohn_order import OrderGuard, RecentKeys, Verdict

LIST_PATH = "/v1/audit-logs"
#: The documented maximum page size of the list endpoint.
PAGE_SIZE = 200


def get_page(http: HelloJohnHttp, params: dict[str, Any]) -> dict[str, Any]:
    """One page, retried under the shared policy; a page that cannot be had stops the read."""
    try:
        for attempt in http.retrying("the same page"):
            with attempt:
                body = http.get_json(LIST_PATH, params)
    except Transient as exc:
        raise SourceError(
            f"the HelloJohn API at {http.base_url} kept failing ({exc.reason}) after {http.max_attempts} attempts; nothing past the last good page was read"
        ) from None
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise SourceError(f"the HelloJohn API at {http.base_url} returned no 'data' list from GET {LIST_PATH}; check source.base_url")
    meta = body.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise SourceError(f"the HelloJohn API at {http.base_url} returned 'meta' as {type(meta).__name__}, expected an object")
    return body


def list_rows(http: HelloJohnHttp, params: dict[str, Any], guard: OrderGuard, page_size: int) -> Iterator[list[Any]]:
    """Rows the guard accepts, page after page, until the last page or the range's end."""
    params = {**params, "limit": page_size}
    cursor: str | None = None
    seen_cursors = RecentKeys(1_000)  # a server handing back an earlier cursor would loop forever
    while True:
        body = get_page(http, {**params, "cursor": cursor} if cursor else params)
        guard.new_response()
        for index, event in enumerate(body["data"]):
            row = event_row(event, index)
            verdict = guard.judge(row_key(row))
            if verdict is Verdict.END:
                return
            if verdict is Verdict.ACCEPT:
                yield row
        next_cursor = (body.get("meta") or {}).get("cursor")
        if next_cursor in (None, ""):
            return
        if not isinstance(next_cursor, str):
            raise SourceError(f"the HelloJohn API at {http.base_url} returned meta.cursor {next_cursor!r}, expected a string or null")
        if next_cursor in seen_cursors:
            raise SourceError(f"the HelloJohn API at {http.base_url} returned a cursor it had already returned; paging would never end")
        seen_cursors.add(next_cursor)
        cursor = next_cursor
