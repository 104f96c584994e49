"""Elasticsearch's REST API as the sink uses it, over the keep-alive HTTP client the other sinks use.

The sink makes four calls: cluster info, reading and installing its index template, and
``_bulk``.  The official client costs every ``forward`` run about 0.45 s of imports and 20 MB
of memory (its asynchronous transport loads aiohttp), and copies each bulk body twice on the
way out; none of that is needed for these calls.  What the client does that matters here is
kept: the ``compatible-with`` media types of the installed client's major version (so the
version rule and its message stay those of ``elasticsearch-py``), the ``X-Elastic-Product``
check, API key or basic credentials, CA certificates, gzip request bodies, and several nodes
taken in turn.  Retention (listing and deleting indices) still uses the official client.
"""

from __future__ import annotations

import gzip
import itertools
import ssl
from collections.abc import Iterator
from importlib import metadata
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from audit_pipeline.config.sections.elasticsearch import ElasticsearchSettings
from audit_pipeline.sinks import http_client


def client_version() -> str:
    """The installed ``elasticsearch`` client's version: the major version this release speaks."""
    try:
        return metadata.version("elasticsearch")
    except metadata.PackageNotFoundError:  # a dependency; only a broken install lacks it
        return "9.0.0"


class ApiError(Exception):
    """Elasticsearch answered with an error status; ``body`` is its JSON (or text) answer."""

    def __init__(self, status: int, body: Any, headers: httpx.Headers) -> None:
        error = body.get("error") if isinstance(body, dict) else body
        kind = error.get("type", "") if isinstance(error, dict) else str(error)[:200]
        super().__init__(f"Elasticsearch answered {status} {kind}".rstrip())
        self.status = status
        self.body = body
        self.headers = headers


class NotElasticsearch(Exception):
    """A successful answer without ``X-Elastic-Product: Elasticsearch`` (as the official client refuses it)."""


class ElasticsearchHttp:
    """One keep-alive connection pool to the cluster; safe to use from several threads at once."""

    def __init__(self, settings: ElasticsearchSettings) -> None:
        urls = [settings.url] if isinstance(settings.url, str) else list(settings.url)
        self._urls = [u.rstrip("/") for u in urls]
        self._turn = itertools.count()
        self._compress = settings.http_compress
        major = client_version().split(".")[0]
        self._json_type = f"application/vnd.elasticsearch+json; compatible-with={major}"
        self._ndjson_type = f"application/vnd.elasticsearch+x-ndjson; compatible-with={major}"
        verify: bool | ssl.SSLContext = settings.verify_certs
        if settings.ca_certs and settings.verify_certs:
            verify = ssl.create_default_context(cafile=settings.ca_certs)
        self._client = http_client.client(settings.request_timeout, verify)
        self._client.headers["Accept"] = self._json_type
        if settings.api_key is not None:
            self._client.headers["Authorization"] = f"ApiKey {settings.api_key.get_secret_value()}"
        elif settings.username and settings.password is not None:
            self._client.auth = httpx.BasicAuth(settings.username, settings.password.get_secret_value())

    def request(self, method: str, path: str, *, body: bytes | memoryview | None = None, ndjson: bool = False, params: dict[str, str] | None = None) -> bytes:
        """The answer's body of a successful request; :class:`ApiError` otherwise, ``httpx.TransportError`` without an answer."""
        headers = {}
        content: bytes | Iterator[bytes] | None = None
        if body is not None:
            headers["Content-Type"] = self._ndjson_type if ndjson else self._json_type
            if self._compress:
                content = gzip.compress(body)
                headers["Content-Encoding"] = "gzip"
            elif isinstance(body, memoryview):
                # Sent from the caller's buffer in slices; the explicit length keeps it one plain (not chunked) request.
                headers["Content-Length"] = str(body.nbytes)
                content = _slices(body)
            else:
                content = body
        url = self._urls[next(self._turn) % len(self._urls)] + path
        response = self._client.request(method, url, content=content, headers=headers, params=params)
        content = response.content
        if not 200 <= response.status_code < 300:
            raise ApiError(response.status_code, _body(content), response.headers)
        if response.headers.get("X-Elastic-Product") != "Elasticsearch":
            raise NotElasticsearch(f"{response.status_code} without X-Elastic-Product")
        return content

    def json(self, method: str, path: str, document: Any = None) -> Any:
        """A JSON request and its parsed answer."""
        content = self.request(method, path, body=None if document is None else orjson.dumps(document))
        return orjson.loads(content) if content else {}

    @staticmethod
    def template_path(name: str) -> str:
        return f"/_index_template/{quote(name, safe='')}"

    def close(self) -> None:
        self._client.close()


#: Bytes copied out and handed to the socket at a time when a body is sent from a buffer.
_SLICE = 256 * 1024


def _slices(body: memoryview) -> Iterator[bytes]:
    for start in range(0, body.nbytes, _SLICE):
        yield bytes(body[start : start + _SLICE])


def _body(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", "replace")
