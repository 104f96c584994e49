"""A stand-in for HelloJohn's admin API audit log list, served from a real PostgreSQL ``audit_logs``.

This is a stand-in, not HelloJohn: no HelloJohn server runs here.  It follows HelloJohn's
documentation ("Querying Audit Logs", "Exporting Audit Logs", "API Reference: Rate Limits",
"Error Codes") as closely as the tests need:

* ``GET /v1/audit-logs?from=…&to=…&limit=…&cursor=…`` (limit default 50, max 200, more is a
  400), optional ``type=`` (``*`` wildcards, ``user.*``) and ``tenant_id=`` filters;
* ``Authorization: Bearer <secret key>``; a missing header is a 401 ``missing_token``, a wrong
  key a 401 ``invalid_api_key``, both in the documented ``{"error": {code, message, status,
  request_id}}`` body; a key listed in ``forbidden_keys`` gets 403 ``insufficient_permissions``;
* the response is ``{"data": [...], "meta": {"total", "limit", "cursor"}}``; ``meta.cursor`` is an
  opaque keyset cursor, null (or, with ``last_cursor="absent"``, missing) on the last page;
* ``X-RateLimit-*`` headers, and now and then a 429 with ``Retry-After`` and the documented
  ``{"error": "rate_limit_exceeded", "message", "retry_after"}`` body.

Choices the documentation leaves open are made pessimistically, so the client is tested
against them: ``to`` is inclusive (the export page's ``to=…T23:59:59Z`` examples suggest it);
``metadata`` is re-serialised from the parsed jsonb with keys in reverse jsonb order, no
spaces and decimals in Python's ``str(Decimal)`` spelling (``1E-7``), so the client must
normalise; events are the table's flat columns, or with ``shape="nested"`` the documented
``actor``/``resource`` objects plus a top-level ``user_agent``.  ``created_at`` is printed
with microseconds (the documentation's example shows milliseconds; see the README).

The export endpoint, as "Exporting Audit Logs" documents it: ``GET /v1/audit-logs/export?format=json``
(or ``format=ndjson``, as the page's curl example spells it) with ``Accept: application/ndjson``
streams one JSON object per line; ``format=csv`` with ``Accept: text/csv`` streams CSV with the
documented columns (:data:`EXPORT_FIELDS`, copied from the page) and a header line.  Both are sent
with chunked transfer encoding, gzip-compressed when the request's ``Accept-Encoding`` allows it,
rows read from PostgreSQL through a server-side cursor so that a day of millions streams.  The page
names no filters and no order; rows come oldest first by ``(created_at, id)``, ``to`` inclusive.
``export_row_cap`` ends every export response cleanly after that many rows (the dashboard's CSV
download is documented as capped at 100,000 rows), ``export_cut_after`` (request number -> rows)
sends that many rows and half of the next line, then drops the connection.  Responses that end
*cleanly* short of the range (last chunk sent, gzip trailer written) are what a server-side cap, a
proxy or a bug would send, and nothing in them says so: ``export_stop_after`` (request number ->
rows) ends that response cleanly after that many rows, ``export_empty_at`` (request numbers)
answers an empty 200.

Faults on demand: ``rate_limit_every`` (every Nth request is a 429), ``fail_at`` (request
numbers answered 500 once), ``drop_at`` (request numbers whose body is cut off mid-way),
``repeat_overlap`` (each page repeats the previous page's last N events), ``swap_in_page``
(two events of a page listed out of order), ``rewrite`` (edit a page's JSON text).
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg

from audit_pipeline.core.schema import COLUMNS

DEFAULT_KEY = "sk_test_standin_0123456789"
MAX_LIMIT = 200

_SELECT = (
    "SELECT id, type, actor_id, actor_email, actor_type, resource_id, resource_type, tenant_id, organization_id,"
    " nullif(format('%%s', ip_address), ''), country, result,"
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), metadata::text"
    ' FROM audit_logs WHERE {where} ORDER BY created_at, id COLLATE "C" LIMIT %s'
)
_FLAT = COLUMNS[: COLUMNS.index("created_at")]  # the plain text fields, in column order
#: "CSV columns:" of HelloJohn's "Exporting Audit Logs" page, in its order; the NDJSON objects carry the same fields.
EXPORT_FIELDS = (
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
_EXPORT_SELECT = _SELECT.removesuffix(" LIMIT %s")  # the whole range, streamed
_EXPORT_BLOCK = 64 * 1024


@dataclass
class StandinOptions:
    secret_key: str = DEFAULT_KEY
    forbidden_keys: tuple[str, ...] = ()
    rate_limit_every: int = 0
    retry_after: int = 1
    fail_at: set[int] = field(default_factory=set)
    drop_at: set[int] = field(default_factory=set)
    repeat_overlap: int = 0
    swap_in_page: bool = False
    shape: str = "flat"
    last_cursor: str = "null"
    #: Applied to each page's JSON text (and each export line) before it is sent, to serve malformed events.
    rewrite: Callable[[str], str] | None = None
    #: Rows an export response holds at most (0: no cap); the response then ends cleanly.
    export_row_cap: int = 0
    #: Export request number -> rows sent before the connection drops in the middle of the next line.
    export_cut_after: dict[int, int] = field(default_factory=dict)
    #: Export request number -> rows sent before that response ends cleanly (last chunk, gzip trailer), mid-range.
    export_stop_after: dict[int, int] = field(default_factory=dict)
    #: Export request numbers answered with an empty 200 (a clean, valid, empty body).
    export_empty_at: set[int] = field(default_factory=set)
    #: Compress export responses when the request accepts gzip (False: always identity).
    export_gzip: bool = True
    #: False: a server without the export endpoint (404, as for any unknown route).
    export_endpoint: bool = True


@dataclass
class RecordedRequest:
    number: int
    status: int
    params: dict[str, str]
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    #: Export rows sent (whole lines).
    rows: int = 0


def _like(pattern: str) -> str:
    return pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")


def _dump(value: Any) -> str:
    """JSON with keys in reverse jsonb order and ``str(Decimal)`` numbers: a different, valid spelling."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()), reverse=True)
        return "{" + ",".join(json.dumps(k) + ":" + _dump(value[k]) for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value)


def _dump_quick(jsonb: str) -> str:
    """:func:`_dump`'s spelling of a jsonb text, in one ``json.dumps`` when it holds no fraction (nested keys then keep their order)."""
    value = json.loads(jsonb, parse_float=Decimal)
    if isinstance(value, dict):
        try:
            return json.dumps({k: value[k] for k in sorted(value, key=lambda k: (len(k.encode()), k.encode()), reverse=True)}, separators=(",", ":"))
        except TypeError:  # a Decimal: spelled one by one
            pass
    return _dump(value)


def _encode_cursor(created_at: str, event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, event_id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    created_at, event_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    return str(created_at), str(event_id)


class HelloJohnApiStandin:
    """The running stand-in: ``base_url``, the options (mutable between requests) and a request log."""

    def __init__(self, database_url: str, options: StandinOptions) -> None:
        self.database_url = database_url
        self.options = options
        self.requests: list[RecordedRequest] = []
        self._totals: dict[tuple[Any, ...], int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[psycopg.Connection[Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="hellojohn-standin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for conn in self._connections:
            conn.close()

    @property
    def list_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.status != 0 and r.path == "/v1/audit-logs"]

    @property
    def export_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/audit-logs/export"]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_GET(self) -> None:
                standin._serve(self)

        return Handler

    # -- responses ------------------------------------------------------------------------------
    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None, cut: bool = False) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("X-HelloJohn-Version", "1.4.2")
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        if cut:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2] if cut else data)
        if cut:
            handler.wfile.flush()
            handler.close_connection = True

    def _error(self, handler: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        self._send(handler, status, {"error": {"code": code, "message": message, "status": status, "request_id": f"req_{uuid.uuid4().hex[:16]}"}})

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        with self._lock:
            number = len(self.requests) + 1
            record = RecordedRequest(number, 0, params, url.path, {k.lower(): v for k, v in handler.headers.items() if k.lower() != "authorization"})
            self.requests.append(record)
        options = self.options
        if url.path not in ("/v1/audit-logs", "/v1/audit-logs/export") or (url.path.endswith("/export") and not options.export_endpoint):
            record.status = 404
            return self._error(handler, 404, "not_found", f"no route {url.path}")
        auth = handler.headers.get("Authorization")
        if not auth:
            record.status = 401
            return self._error(handler, 401, "missing_token", "No Authorization header present")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        if token in options.forbidden_keys:
            record.status = 403
            return self._error(handler, 403, "insufficient_permissions", "Token is valid but lacks required role/permission")
        if token != options.secret_key:
            record.status = 401
            return self._error(handler, 401, "invalid_api_key", "Secret key sk_... is invalid or revoked")
        if options.rate_limit_every and number % options.rate_limit_every == 0:
            record.status = 429
            return self._send(
                handler,
                429,
                {
                    "error": "rate_limit_exceeded",
                    "message": f"Rate limit exceeded. Retry after {options.retry_after} seconds.",
                    "retry_after": options.retry_after,
                },
                {"Retry-After": str(options.retry_after), "X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "0"},
            )
        if number in options.fail_at:
            record.status = 500
            return self._error(handler, 500, "internal_error", "An unexpected error occurred")
        if url.path == "/v1/audit-logs/export":
            return self._serve_export(handler, record, params)
        try:
            limit = int(params.get("limit", "50"))
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAX_LIMIT:
            record.status = 400
            return self._error(handler, 400, "validation_error", f"limit must be between 1 and {MAX_LIMIT}")
        try:
            page, total, cursor = self._query(params, limit)
        except (ValueError, psycopg.errors.DataError) as exc:
            record.status = 400
            return self._error(handler, 400, "validation_error", str(exc).splitlines()[0])
        meta: dict[str, Any] = {"total": total, "limit": limit}
        if cursor is not None or options.last_cursor == "null":
            meta["cursor"] = cursor
        text = '{"data": [' + ", ".join(page) + '], "meta": ' + json.dumps(meta) + "}"
        if options.rewrite is not None:
            text = options.rewrite(text)
        record.status = 200
        self._send(handler, 200, text, {"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "999"}, cut=number in options.drop_at)

    # -- export -----------------------------------------------------------------------------------
    def _serve_export(self, handler: BaseHTTPRequestHandler, record: RecordedRequest, params: dict[str, str]) -> None:
        fmt = params.get("format", "json")
        if fmt not in ("json", "ndjson", "csv"):
            record.status = 400
            return self._error(handler, 400, "validation_error", "format must be csv or json")
        conditions, values = ["true"], []
        if "from" in params:
            conditions.append("created_at >= %s::timestamptz")
            values.append(params["from"])
        if "to" in params:
            conditions.append("created_at <= %s::timestamptz")  # inclusive, as for the list
            values.append(params["to"])
        conn = psycopg.connect(self.database_url)  # a transaction of its own, for the server-side cursor
        try:
            cursor = conn.cursor(name="export")
            cursor.itersize = 2_000
            try:
                cursor.execute(_EXPORT_SELECT.format(where=" AND ".join(conditions)), values)
                first = cursor.fetchmany(3)
            except psycopg.errors.DataError as exc:
                record.status = 400
                return self._error(handler, 400, "validation_error", str(exc).splitlines()[0])
            if self.options.swap_in_page and len(first) == 3:
                first[1], first[2] = first[2], first[1]
            rows: Iterator[tuple[Any, ...]] = itertools.chain(first, cursor)
            record.status = 200
            try:
                self._stream_export(handler, record, fmt, rows)
            except (BrokenPipeError, ConnectionResetError):  # the client stopped reading (a probe, a limit, the range's end)
                handler.close_connection = True
        finally:
            conn.close()

    def _stream_export(self, handler: BaseHTTPRequestHandler, record: RecordedRequest, fmt: str, rows: Iterator[tuple[Any, ...]]) -> None:
        options = self.options
        gzip = options.export_gzip and "gzip" in (handler.headers.get("Accept-Encoding") or "")
        handler.send_response(200)
        handler.send_header("Content-Type", "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("X-HelloJohn-Version", "1.4.2")
        if gzip:
            handler.send_header("Content-Encoding", "gzip")
        handler.end_headers()
        compressor = zlib.compressobj(wbits=31) if gzip else None

        def send(data: bytes, *, flush: bool = False) -> None:
            if compressor is not None:
                data = compressor.compress(data) + (compressor.flush(zlib.Z_SYNC_FLUSH) if flush else b"")
            if data:
                handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        cut_after = options.export_cut_after.get(record.number)
        stop_after = 0 if record.number in options.export_empty_at else options.export_stop_after.get(record.number)
        block: list[bytes] = []
        size = 0
        if fmt == "csv":
            block.append(_csv_line(EXPORT_FIELDS))
        for row in rows:
            line = self._export_line(row, fmt)
            if cut_after is not None and record.rows == cut_after:
                send(b"".join(block) + line[: max(1, len(line) // 2)], flush=True)
                handler.wfile.flush()
                handler.close_connection = True
                return  # no last chunk: the connection ends mid-line
            if (options.export_row_cap and record.rows == options.export_row_cap) or record.rows == stop_after:
                break  # a clean end: the rest of the response (last chunk, gzip trailer) is sent as for a whole range
            block.append(line)
            size += len(line)
            record.rows += 1
            if size >= _EXPORT_BLOCK:
                send(b"".join(block))
                block, size = [], 0
        send(b"".join(block))
        if compressor is not None:
            tail = compressor.flush()
            if tail:
                handler.wfile.write(f"{len(tail):x}\r\n".encode() + tail + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    def _export_line(self, row: tuple[Any, ...], fmt: str) -> bytes:
        if fmt == "csv":
            return _csv_line(row)
        fields = json.dumps(dict(zip(EXPORT_FIELDS[:-1], row[:-1], strict=True)), ensure_ascii=False, separators=(",", ":"))
        text = fields[:-1] + ',"metadata":' + _dump_quick(row[-1]) + "}"
        if self.options.rewrite is not None:
            text = self.options.rewrite(text)
        return text.encode() + b"\n"

    # -- data -----------------------------------------------------------------------------------
    def _query(self, params: dict[str, str], limit: int) -> tuple[list[str], int, str | None]:
        conditions, values = ["true"], []
        if "from" in params:
            conditions.append("created_at >= %s::timestamptz")
            values.append(params["from"])
        if "to" in params:
            conditions.append("created_at <= %s::timestamptz")  # inclusive, see the module docstring
            values.append(params["to"])
        if params.get("type"):
            conditions.append("type LIKE %s ESCAPE '\\'")
            values.append(_like(params["type"]))
        if params.get("tenant_id"):
            conditions.append("tenant_id = %s")
            values.append(params["tenant_id"])
        filters, filter_values = " AND ".join(conditions), list(values)
        overlap = self.options.repeat_overlap
        if params.get("cursor"):
            created_at, event_id = _decode_cursor(params["cursor"])
            # A range scan of the created_at index from the cursor's instant, as a keyset cursor is served.
            conditions.append('created_at >= %s::timestamptz AND (created_at > %s::timestamptz OR id COLLATE "C" > %s)')
            values += [created_at, created_at, event_id]
        conn = self._connection()
        rows = conn.execute(_SELECT.format(where=" AND ".join(conditions)), [*values, limit + 1]).fetchall()
        total_key = (filters, tuple(filter_values))
        if total_key not in self._totals:  # meta.total counted once per query, as a server would cache it
            total_row = conn.execute(f"SELECT count(*) FROM audit_logs WHERE {filters}", filter_values).fetchone()
            self._totals[total_key] = int(total_row[0]) if total_row else 0
        repeated: list[tuple[Any, ...]] = []
        if overlap and params.get("cursor"):
            created_at, event_id = _decode_cursor(params["cursor"])
            before = _SELECT.replace('ORDER BY created_at, id COLLATE "C"', 'ORDER BY created_at DESC, id COLLATE "C" DESC').format(
                where=filters + ' AND (created_at < %s::timestamptz OR (created_at = %s::timestamptz AND id COLLATE "C" <= %s))'
            )
            repeated = list(reversed(conn.execute(before, [*filter_values, created_at, created_at, event_id, overlap]).fetchall()))
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = _encode_cursor(rows[-1][12], rows[-1][0]) if more else None
        page = [self._event_json(r) for r in repeated + rows]
        if self.options.swap_in_page and len(page) >= 3:
            page[1], page[2] = page[2], page[1]
        return page, self._totals[total_key], cursor

    def _connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.database_url, autocommit=True)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _event_json(self, row: tuple[Any, ...]) -> str:
        values = dict(zip(_FLAT, row[:12], strict=True))
        metadata = json.loads(row[13], parse_float=Decimal)
        if self.options.shape == "nested":
            event: dict[str, Any] = {
                "id": values["id"],
                "type": values["type"],
                "actor": {"id": values["actor_id"], "email": values["actor_email"], "type": values["actor_type"]},
                "resource": {"id": values["resource_id"], "type": values["resource_type"]},
                "tenant_id": values["tenant_id"],
                "organization_id": values["organization_id"],
                "ip_address": values["ip_address"],
                "user_agent": metadata.get("user_agent") if isinstance(metadata, dict) else None,
                "country": values["country"],
                "result": values["result"],
            }
        else:
            event = values
        parts = [f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in event.items()]
        parts.append(f'"metadata": {_dump(metadata)}')
        parts.append(f'"created_at": {json.dumps(row[12])}')
        return "{" + ", ".join(parts) + "}"


def _csv_line(values: Any) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return out.getvalue().encode()


@contextmanager
def serve_hellojohn_api(database_url: str, **options: Any) -> Iterator[HelloJohnApiStandin]:
    """Run the stand-in over ``database_url`` for the duration of the block."""
    standin = HelloJohnApiStandin(database_url, StandinOptions(**options))
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()
