"""The export stream, ``GET /v1/audit-logs/export?format=json&from=…&to=…``: a range in one request.

HelloJohn documents it as NDJSON ("one JSON object per line, suitable for streaming large
exports") with ``Accept: application/ndjson``.  It is asked for with ``Accept-Encoding: gzip``
and read as it arrives: the body is decompressed and split into lines chunk by chunk, each line
parsed exactly (numbers as ``Decimal``) and handed on, so memory holds one chunk and one line
(a line may be megabytes) whatever the range.

A range is complete only when the server has shown it has nothing more, whatever a response's
size: no count of events proves a response whole (a server or a proxy may stop a response cleanly,
final chunk and gzip trailer sent, after any number of events, or answer an empty 200).  So:

* after a response that brought new events, the last accepted instant is *settled* through the
  paged list (``GET /v1/audit-logs?from=T&to=T+1µs``, one request for up to 200 events at that
  instant): the list pages by ``(created_at, id)`` with a cursor, so no cap on a response can hide
  an event that shares the instant where a response stopped;
* the next request asks for the rest of the range from the microsecond after that instant;
* the read ends when a request brings nothing new (an empty answer), or when the server lists an
  event past the range's end.  An empty first answer is asked again once: only a second empty
  answer shows the range is empty.

A response that breaks off (the connection drops, the body ends inside a line, a gzip body ends
before its trailer) is handled the same way when it brought something new, and retried under the
list reads' policy when it did not; the read fails, and nothing is published, only when the server
keeps breaking off without a new event.  A healthy day costs three requests: the range, the list
request settling its last instant, and the request that brings nothing new.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import orjson

from audit_pipeline.core.errors import SourceError
from audit_pipeline.core.isotime import format_instant
from audit_pipeline.core.isotime import from_epoch_micros as from_micros
from audit_pipeline.sources.hellojohn_events import InexactNumber, event_row, row_key
from audit_pipeline.sources.hellojohn_http import HelloJohnHttp, Transient, reject_constant
from audit_pipeline.sources.hellojohn_list import PAGE_SIZE, list_rows
from audit_pipeline.sources.hellojohn_order import OrderGuard, Verdict

EXPORT_PATH = "/v1/audit-logs/export"
HEADERS = {"Accept": "application/ndjson", "Accept-Encoding": "gzip"}
#: Decompressed bytes handed on at a time: memory stays bounded whatever a chunk inflates to.
_INFLATED = 1 << 20


class _Truncated(Exception):
    """The response ended before its end: the connection dropped or the gzip trailer is missing."""


class LineSplitter:
    """Complete lines out of arbitrary chunks; a long line is joined once, when its newline arrives."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []

    def feed(self, data: bytes) -> list[bytes]:
        parts = data.split(b"\n")
        if len(parts) == 1:
            if data:
                self._pieces.append(data)
            return []
        if self._pieces:
            self._pieces.append(parts[0])
            parts[0] = b"".join(self._pieces)
        self._pieces = [parts[-1]] if parts[-1] else []
        return parts[:-1]

    def tail(self) -> bytes:
        """What came after the last newline: a final line without one, or a line cut off."""
        return b"".join(self._pieces)


def _decoded(response: httpx.Response) -> Iterator[bytes]:
    """The body as sent before ``Content-Encoding``; :class:`_Truncated` if it ends early."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("gzip", "identity", ""):
        raise SourceError(f"the HelloJohn export answered with Content-Encoding {encoding!r}; only gzip was asked for")
    try:
        if encoding != "gzip":
            yield from response.iter_raw()
            return
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        received = 0
        for chunk in response.iter_raw():
            received += len(chunk)
            data = chunk
            while data:  # at most _INFLATED bytes at a time, however well the chunk compresses
                inflated = decompressor.decompress(data, _INFLATED)
                if inflated:
                    yield inflated
                if decompressor.eof:  # a further gzip member may follow
                    data = decompressor.unused_data
                    if data:
                        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                else:
                    data = decompressor.unconsumed_tail
        if received and not decompressor.eof:  # an empty body is an empty range, not a cut gzip stream
            raise _Truncated("the gzip body ended before its end")
    except httpx.TransportError as exc:
        raise _Truncated(f"the connection failed ({type(exc).__name__})") from None
    except zlib.error as exc:
        raise _Truncated(f"the gzip body is corrupt ({exc})") from None


def _exact(line: bytes) -> Any:
    return json.loads(line, parse_float=Decimal, parse_constant=reject_constant)


def _event(line: bytes, index: int) -> list[Any]:
    """A line as a row: orjson first; the exact parser for numbers orjson cannot keep (floats, > 64 bits)."""
    try:
        return event_row(orjson.loads(line), index)
    except (orjson.JSONDecodeError, InexactNumber):
        return event_row(_exact(line), index)


@dataclass
class Response:
    """What one request brought."""

    events: int = 0
    accepted: int = 0
    #: Why the response broke off before its end; None when it ended cleanly.
    short: str | None = None
    #: An event past the range's end was seen: nothing more to read.
    ended: bool = False


class ExportReader:
    """Reads ``[from, to)`` through the export endpoint until the server shows there is nothing more."""

    def __init__(self, http: HelloJohnHttp, *, row_cap: int = 0) -> None:
        self.http = http
        #: ``source.export_row_cap``: kept for configurations that set it; no response size is trusted any more.
        self.row_cap = row_cap
        self.origin = f"the HelloJohn export stream at {http.base_url}"

    def rows(self, params: dict[str, Any], guard: OrderGuard) -> Iterator[list[Any]]:
        """Rows the guard accepts, across as many requests as it takes the server to show the range's end."""
        query = {**params, "format": "json"}
        failures = 0
        empty_answers = 0
        while True:
            response = Response()
            try:
                yield from self._one(query, guard, response)
            except Transient as exc:  # refused before the body (429, 5xx, no connection): nothing received
                failures += 1
                if failures >= self.http.max_attempts:
                    raise self._no_progress(query, f"it kept failing ({exc.reason}, {failures} attempts)") from None
                self.http.pause(exc, failures, "the export stream")
                continue
            if response.ended:
                return  # the server listed an event past the range's end: it holds nothing more
            if response.accepted:
                failures = 0
                assert guard.last is not None
                yield from self._settle(guard)
                following = guard.last[0] + 1
                if following >= guard.end:
                    return  # the range's last microsecond is settled
                query["from"] = format_instant(from_micros(following))
                continue  # whatever this response held, only an answer with nothing new shows the end
            if response.short is not None:  # broke off before anything new came: the same request again
                failures += 1
                if failures >= self.http.max_attempts:
                    raise self._no_progress(query, f"{response.short} ({failures} attempts)")
                self.http.pause(Transient(response.short), failures, "the export stream")
                continue
            if guard.last is not None or empty_answers:
                return  # asked for the rest and nothing new came: the server has nothing more
            empty_answers += 1  # an empty first answer is not taken on its word: asked once more

    def _settle(self, guard: OrderGuard) -> Iterator[list[Any]]:
        """Every event at the last accepted instant, through the paged list: a response may have stopped among them."""
        assert guard.last is not None
        instant = guard.last[0]
        params = {"from": format_instant(from_micros(instant)), "to": format_instant(from_micros(instant + 1))}
        at_instant = OrderGuard(instant, instant + 1, None, origin=f"the HelloJohn API at {self.http.base_url}")
        guard.new_response()
        for row in list_rows(self.http, params, at_instant, PAGE_SIZE):
            if guard.judge(row_key(row)) is Verdict.ACCEPT:
                yield row

    def _no_progress(self, query: dict[str, Any], why: str) -> SourceError:
        return SourceError(
            f"{self.origin}: resuming from {query['from']} made no progress, {why}; nothing was published. "
            "Run the export again later, or read this range with source.api_read: list"
        )

    def _one(self, query: dict[str, Any], guard: OrderGuard, response: Response) -> Iterator[list[Any]]:
        with self.http.stream(EXPORT_PATH, query, HEADERS) as http_response:
            guard.new_response()
            lines = LineSplitter()
            try:
                for data in _decoded(http_response):
                    for line in lines.feed(data):
                        row = self._row(line, response, complete=True)
                        if row is not None and self._judge(row, guard, response):
                            yield row
                        if response.ended:
                            return
                tail = lines.tail()
                if tail.strip():
                    row = self._row(tail, response, complete=False)
                    if row is None:
                        response.short = f"the body ended within a line after {response.events:,} events"
                        return
                    if self._judge(row, guard, response):
                        yield row
            except _Truncated as exc:
                response.short = f"{exc} after {response.events:,} events"
                return

    def _row(self, line: bytes, response: Response, *, complete: bool) -> list[Any] | None:
        """The line as a row; a final line without its newline that does not parse is None (cut off)."""
        if not line.strip():
            return None
        try:
            row = _event(line, response.events + 1)
        except ValueError as exc:
            if not complete:
                return None
            raise SourceError(f"{self.origin} sent line {response.events + 1:,} that is not JSON ({str(exc)[:200]})") from None
        response.events += 1
        return row

    def _judge(self, row: list[Any], guard: OrderGuard, response: Response) -> bool:
        verdict = guard.judge(row_key(row))
        if verdict is Verdict.END:
            response.ended = True
            return False
        if verdict is Verdict.ACCEPT:
            response.accepted += 1
            return True
        return False
