"""The HTTP plumbing the Datadog, Splunk and webhook stand-ins share: a real server on a local
port (threads, keep-alive), every request recorded, and faults injected on demand.

Faults are answered before the vendor logic runs, in the order they were queued:
``Fault(status=429, headers={"Retry-After": "1"})``, ``Fault(disconnect=True)`` (the
connection is closed without an answer, as when a server dies mid-request) or
``Fault(delay=2)`` (answer late, to trip the client's timeout). ``outage = True`` drops every
connection until it is set back to False.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a timeout, a killed forwarder) is part of the tests, not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Fault:
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    disconnect: bool = False
    delay: float = 0.0
    #: Only requests to this path take the fault (others pass it by).
    path: str | None = None


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    answered: int | None = None  # status sent back, None when the connection was dropped


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    """Base for a stand-in: subclasses implement :meth:`handle` the way the vendor documents."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.outage = False
        self._faults: deque[Fault] = deque()
        self._lock = threading.RLock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                receiver._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def handle(self, request: Request) -> Answer:
        raise NotImplementedError

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path in (None, path):
                    self._faults.remove(fault)
                    return fault
        return None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        request = Request(handler.command, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in handler.headers.items()}, body)
        with self._lock:
            self.requests.append(request)
        fault = None if self.outage else self._next_fault(parts.path)
        if self.outage or (fault and fault.disconnect):
            handler.close_connection = True
            return
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.status is not None:
            answer = Answer(fault.status, fault.body, fault.headers)
        else:
            with self._lock:
                answer = self.handle(request)
        request.answered = answer.status
        try:
            handler.send_response(answer.status)
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(answer.body)))
            handler.end_headers()
            handler.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
