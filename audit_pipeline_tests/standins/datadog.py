"""A stand-in for Datadog's HTTP logs intake v2 (``POST /api/v2/logs``).

This is a stand-in, not Datadog: no Datadog service runs here. It follows Datadog's "Send
logs" API reference as closely as the tests need:

* ``DD-API-KEY`` header: missing → 401, wrong → 403 (Datadog's ``{"errors": [...]}`` body);
* ``Content-Type: application/json`` (anything else → 400); ``Content-Encoding: gzip`` or
  ``deflate`` is decompressed (a body that does not decompress → 400);
* the body is a JSON log object or an array of them; over 5 MB uncompressed → 413; an array
  of more than 1,000 entries → 400 (Datadog documents the limit, not the status code);
* an entry over 1 MB is accepted and truncated, as Datadog does (recorded in ``truncated``);
* ``timestamp`` (milliseconds since the epoch, or ISO 8601) is honoured within 18 hours in the
  past and 2 hours in the future; a log outside that window is accepted (202) but not kept,
  recorded in ``dropped``: what happens to such logs at Datadog, where they never show up;
* success is ``202 Accepted`` with ``{}``;
* ``GET /api/v1/validate`` ("Validate API key") answers ``{"valid": true}`` for the key, 403 otherwise.

Faults come from :class:`~audit_pipeline_tests.standins.receiver.Receiver` (outage, 429 with
Retry-After, 413, 5xx, dropped connections). ``wire_errors`` lists every way a request broke
the documented format, so a test can assert there were none.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import zlib
from typing import Any

from audit_pipeline_tests.standins.receiver import Answer, Receiver, Request

PATH = "/api/v2/logs"
VALIDATE_PATH = "/api/v1/validate"
MAX_PAYLOAD = 5_000_000
MAX_ENTRIES = 1_000
MAX_ENTRY = 1_000_000


class DatadogIntake(Receiver):
    def __init__(self, api_key: str = "dd-standin-api-key-0123456789abcdef", now: Any = None) -> None:
        super().__init__()
        self.api_key = api_key
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.logs: list[dict[str, Any]] = []
        self.dropped: list[dict[str, Any]] = []
        self.truncated: list[dict[str, Any]] = []
        self.wire_errors: list[str] = []

    @property
    def intake_url(self) -> str:
        return self.url + PATH

    def _error(self, status: int, message: str) -> Answer:
        if status in (400, 413):
            self.wire_errors.append(f"{status}: {message}")
        return Answer(status, json.dumps({"errors": [message]}).encode(), {"Content-Type": "application/json"})

    def handle(self, request: Request) -> Answer:
        if request.path == VALIDATE_PATH and request.method == "GET":
            # "Validate API key": 200 {"valid": true}, or 403 {"errors": ["Forbidden"]} for a wrong or missing key.
            if request.headers.get("dd-api-key") != self.api_key:
                return Answer(403, json.dumps({"errors": ["Forbidden"]}).encode(), {"Content-Type": "application/json"})
            return Answer(200, b'{"valid":true}', {"Content-Type": "application/json"})
        if request.path != PATH:
            return self._error(404, "Not found")
        if request.method != "POST":
            return self._error(405, "Method not allowed")
        key = request.headers.get("dd-api-key")
        if not key:
            return self._error(401, "Unauthorized")
        if key != self.api_key:
            return self._error(403, "Forbidden")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return self._error(400, f"unsupported Content-Type {request.headers.get('content-type')!r}")
        body = request.body
        encoding = request.headers.get("content-encoding", "identity").lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding != "identity":
                return self._error(400, f"unsupported Content-Encoding {encoding!r}")
        except (OSError, zlib.error, EOFError):
            return self._error(400, "body does not decompress")
        if len(body) > MAX_PAYLOAD:
            return self._error(413, "Payload too large")
        try:
            payload = json.loads(body)
        except ValueError:
            return self._error(400, "body is not JSON")
        entries = payload if isinstance(payload, list) else [payload]
        if len(entries) > MAX_ENTRIES:
            return self._error(400, f"{len(entries)} entries in one request, over the 1,000 limit")
        if not all(isinstance(e, dict) for e in entries):
            return self._error(400, "every log must be a JSON object")
        now = self.now()
        for entry in entries:
            if len(json.dumps(entry, ensure_ascii=False).encode()) > MAX_ENTRY:
                self.truncated.append(entry)
            when = _timestamp(entry.get("timestamp"))
            if when is not None and not (now - dt.timedelta(hours=18) <= when <= now + dt.timedelta(hours=2)):
                self.dropped.append(entry)
            else:
                self.logs.append(entry)
        return Answer(202, b"{}", {"Content-Type": "application/json"})


def _timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None
