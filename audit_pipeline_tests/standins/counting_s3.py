"""moto's S3 over HTTP, counting every request and the bytes each way.

The same server as the ``s3_server`` fixture (moto's WSGI app behind werkzeug), wrapped so a
test or benchmark can say exactly what a run uploaded and downloaded: which objects were
fetched whole, which by range, and how many bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


@dataclass(frozen=True)
class S3Request:
    method: str
    path: str
    query: str
    range: str | None
    bytes_up: int
    bytes_down: int


class _Counting:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.requests: list[S3Request] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        up = int(environ.get("CONTENT_LENGTH") or 0)
        down = 0
        try:
            for chunk in self.app(environ, start_response):
                down += len(chunk)
                yield chunk
        finally:
            with self.lock:
                self.requests.append(
                    S3Request(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""), environ.get("HTTP_RANGE"), up, down)
                )


class CountingS3Server:
    """Start with :meth:`start`; ``requests`` holds what was asked since the last :meth:`reset`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._counting = _Counting(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(host, port, self._counting, threaded=True, request_handler=MotoRequestHandler)
        self.endpoint_url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> CountingS3Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

    @property
    def requests(self) -> list[S3Request]:
        with self._counting.lock:
            return list(self._counting.requests)

    def reset(self) -> None:
        with self._counting.lock:
            self._counting.requests.clear()

    def totals(self) -> tuple[int, int]:
        """Bytes uploaded and downloaded (request and response bodies) since the last reset."""
        found = self.requests
        return sum(r.bytes_up for r in found), sum(r.bytes_down for r in found)
