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

Faults on demand: ``rate_limit_every`` (every Nth request is a 429), ``fail_at`` (request
numbers answered 500 once), ``drop_at`` (request numbers whose body is cut off mid-way),
``repeat_overlap`` (each page repeats the previous page's last N events), ``swap_in_page``
(two events of a page listed out of order), ``rewrite`` (edit a page's JSON text).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg

from audit_pipeline.schema import COLUMNS

DEFAULT_KEY = "sk_test_standin_0123456789"
MAX_LIMIT = 200

_SELECT = (
    "SELECT id, type, actor_id, actor_email, actor_type, resource_id, resource_type, tenant_id, organization_id,"
    " nullif(format('%%s', ip_address), ''), country, result,"
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), metadata::text"
    ' FROM audit_logs WHERE {where} ORDER BY created_at, id COLLATE "C" LIMIT %s'
)
_FLAT = COLUMNS[: COLUMNS.index("created_at")]  # the plain text fields, in column order


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
    #: Applied to each page's JSON text before it is sent, to serve malformed events.
    rewrite: Callable[[str], str] | None = None


@dataclass
class RecordedRequest:
    number: int
    status: int
    params: dict[str, str]


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
        return [r for r in self.requests if r.status != 0]

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
            record = RecordedRequest(number, 0, params)
            self.requests.append(record)
        options = self.options
        if url.path != "/v1/audit-logs":
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
            conditions.append('(created_at > %s::timestamptz OR (created_at = %s::timestamptz AND id COLLATE "C" > %s))')
            values += [created_at, created_at, event_id]
        conn = self._connection()
        rows = conn.execute(_SELECT.format(where=" AND ".join(conditions)), [*values, limit + 1]).fetchall()
        total_row = conn.execute(f"SELECT count(*) FROM audit_logs WHERE {filters}", filter_values).fetchone()
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
        return page, int(total_row[0]) if total_row else 0, cursor

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


@contextmanager
def serve_hellojohn_api(database_url: str, **options: Any) -> Iterator[HelloJohnApiStandin]:
    """Run the stand-in over ``database_url`` for the duration of the block."""
    standin = HelloJohnApiStandin(database_url, StandinOptions(**options))
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()
