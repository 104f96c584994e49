"""The export stream, ``GET /v1/audit-logs/export?format=json&from=…&to=…``: a range in one request.

HelloJohn documents it as NDJSON ("one JSON object per line, suitable for streaming large
exports") with ``Accept: application/ndjson``.  It is asked for with ``Accept-Encoding: gzip``
and read as it arrives: the body is decompressed and split into lines chunk by chunk, each line
parsed exactly (numbers as ``Decimal``) and handed on, so memory holds one chunk and one line
(a line may be megabytes) whatever the range.

A response that may not hold the rest of the range is never taken as complete:

* the connection drops, or the body ends inside a line, or a gzip body ends before its trailer;
* it holds exactly ``row_cap`` events (HelloJohn caps its dashboard's CSV download at 100,000
  rows, and the endpoint is treated as possibly capped too);
* it holds a round number of events (a positive multiple of 1,000): a cap other than the
  configured one is detected by asking once more.

Such a response is resumed with a new request from the ``created_at`` of the last accepted
event; the events at that same instant that were already accepted come again and are skipped
by id (:class:`OrderGuard`).  A resumed request that brings nothing new is retried under the
list reads' policy when the connection failed, and stops the read when the server keeps
returning the same capped answer: resuming cannot move past an instant shared by more events
than the cap, and saying so beats exporting a day with a hole in it.
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

from audit_pipeline.errors import SourceError
from audit_pipeline.isotime import format_instant
from audit_pipeline.sources.hellojohn_events import InexactNumber, event_row, from_micros, row_key
from audit_pipeline.sources.hellojohn_http import HelloJohnHttp, Transient, reject_constant
from audit_pipeline.sources.hellojohn_order import OrderGuard, Verdict

EXPORT_PATH = "/v1/audit-logs/export"
HEADERS = {"Accept": "application/ndjson", "Accept-Encoding": "gzip"}
#: A response of a positive multiple of this many events is resumed once to rule out an unknown cap.
ROUND = 1_000
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
    #: Why the response may not be the whole rest of the range; None when it is.
    short: str | None = None
    #: Short only because of its size (a cap), not because it broke off.
    capped: bool = False
    #: An event past the range's end was seen: nothing more to read.
    ended: bool = False


class ExportReader:
    """Reads ``[from, to)`` through the export endpoint, resuming until the range is complete."""

    def __init__(self, http: HelloJohnHttp, *, row_cap: int) -> None:
        self.http = http
        self.row_cap = row_cap
        self.origin = f"the HelloJohn export stream at {http.base_url}"

    def rows(self, params: dict[str, Any], guard: OrderGuard) -> Iterator[list[Any]]:
        """Rows the guard accepts, across as many requests as truncation makes necessary."""
        query = {**params, "format": "json"}
        failures = 0
        previous: Response | None = None
        while True:
            if guard.last is not None:
                query["from"] = format_instant(from_micros(guard.last[0]))
            response = Response()
            try:
                yield from self._one(query, guard, response)
            except Transient as exc:  # refused before the body (429, 5xx, no connection): nothing received
                failures += 1
                if failures >= self.http.max_attempts:
                    raise self._no_progress(query, f"it kept failing ({exc.reason}, {failures} attempts)") from None
                self.http.pause(exc, failures, "the export stream")
                continue
            if response.ended or response.short is None:
                return
            if response.accepted:
                failures = 0
                previous = response
                continue
            # Nothing new came: the same request would bring the same again.
            if not response.capped:
                failures += 1
                if failures >= self.http.max_attempts:
                    raise self._no_progress(query, f"{response.short} ({failures} attempts)")
                self.http.pause(Transient(response.short), failures, "the export stream")
                continue
            if response.events == self.row_cap or (previous is not None and response.events == previous.events):
                raise self._no_progress(query, f"it returned the same {response.events:,} events again ({response.short})")
            return  # a round number of events, none new: the range had simply ended there

    def _no_progress(self, query: dict[str, Any], why: str) -> SourceError:
        return SourceError(
            f"{self.origin}: resuming from {query['from']} made no progress, {why}; nothing was published. "
            "More events may share that instant than the server returns in one response: raise source.export_row_cap to the server's cap, "
            "or read this range with source.api_read: list"
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
        if response.ended:
            return
        if self.row_cap and response.events == self.row_cap:
            response.short, response.capped = f"{response.events:,} events, the cap (source.export_row_cap)", True
        elif response.events and response.events % ROUND == 0:
            response.short, response.capped = f"a round {response.events:,} events, possibly a cap", True

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
