"""A stand-in for Splunk's HTTP Event Collector (``/services/collector/event`` and ``/services/collector/ack``).

This is a stand-in, not Splunk: no Splunk server runs here. It follows Splunk's HEC
documentation ("Format events for HTTP Event Collector", the HEC REST endpoints, the HEC
error-code table, "About HTTP Event Collector indexer acknowledgment") as the tests need:

* ``Authorization: Splunk <token>``: missing → 401 code 2, another scheme → 401 code 3, an
  unknown token → 403 code 4, a disabled token → 403 code 1;
* the body is one or more JSON event envelopes one after another (``{...}{...}``); each needs
  ``event`` (code 12 when missing, 13 when blank); ``time`` must be epoch seconds (code 6
  otherwise); ``index`` must be one the token may write (code 7); the answer to a bad event
  carries ``invalid-event-number``, and, as Splunk does not say whether events before it were
  indexed, this stand-in indexes none of the request (the sink resends the others either way);
* a body over ``max_content_length`` (limits.conf ``[http_input]``) → 413; an empty body → code 5;
* with indexer acknowledgement on for the token (``use_ack``): ``X-Splunk-Request-Channel``
  (or ``?channel=``) is required (code 10) and must be a GUID (code 11); the answer carries
  ``ackId``; ``POST /services/collector/ack`` with ``{"acks": [ids]}`` answers
  ``{"acks": {"id": true|false}}``, true once indexed (after ``ack_after_polls`` polls), and
  like Splunk forgets an ack once it has reported it true; with ack off the ack endpoint
  answers code 14;
* ``GET /services/collector/health`` needs no token: ``200 code 17 "HEC is healthy"``, or
  ``503 code 18`` while ``busy``;
* success is ``{"text": "Success", "code": 0}``; ``busy = True`` answers 503 code 9.

``time`` is parsed as a decimal, so tests can check it is exact to the microsecond.
Faults come from :class:`~audit_pipeline_tests.standins.receiver.Receiver`.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from audit_pipeline_tests.standins.receiver import Answer, Receiver, Request

EVENT_PATHS = ("/services/collector/event", "/services/collector", "/services/collector/event/1.0")
ACK_PATH = "/services/collector/ack"
HEALTH_PATH = "/services/collector/health"


class SplunkHec(Receiver):
    def __init__(
        self,
        token: str = "11111111-2222-3333-4444-555555555555",
        indexes: tuple[str, ...] = ("main", "hellojohn"),
        default_index: str = "main",
        use_ack: bool = False,
        ack_after_polls: int | None = 1,
        max_content_length: int = 1_000_000,
    ) -> None:
        super().__init__()
        self.token = token
        self.token_disabled = False
        self.indexes = indexes
        self.default_index = default_index
        self.use_ack = use_ack
        self.ack_after_polls = ack_after_polls
        self.max_content_length = max_content_length
        self.busy = False
        #: Audit ids whose envelopes this stand-in refuses as invalid (code 6), to test dead letters.
        self.refuse_ids: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self.wire_errors: list[str] = []
        self._acks: dict[str, dict[int, int]] = {}  # channel -> ackId -> polls so far
        self._next_ack: dict[str, int] = {}

    def _reply(self, status: int, code: int, text: str, **extra: Any) -> Answer:
        if status in (400, 413) and code not in (10, 14):
            self.wire_errors.append(f"{status} code {code}: {text}")
        return Answer(status, json.dumps({"text": text, "code": code, **extra}).encode(), {"Content-Type": "application/json"})

    def _auth(self, request: Request) -> Answer | None:
        header = request.headers.get("authorization")
        if not header:
            return self._reply(401, 2, "Token is required")
        scheme, _, token = header.partition(" ")
        if scheme != "Splunk" or not token:
            return self._reply(401, 3, "Invalid authorization")
        if token != self.token:
            return self._reply(403, 4, "Invalid token")
        if self.token_disabled:
            return self._reply(403, 1, "Token disabled")
        return None

    def _channel(self, request: Request) -> tuple[str | None, Answer | None]:
        channel = request.headers.get("x-splunk-request-channel") or (request.query.get("channel") or [None])[0]
        if not channel:
            return None, self._reply(400, 10, "Data channel is missing")
        try:
            uuid.UUID(channel)
        except ValueError:
            return None, self._reply(400, 11, "Invalid data channel")
        return channel, None

    def handle(self, request: Request) -> Answer:
        if request.path == ACK_PATH:
            return self._ack(request)
        if request.path in (HEALTH_PATH, HEALTH_PATH + "/1.0"):
            # No token needed; 200 code 17 when healthy, 503 code 18 when the queues are full (busy).
            return self._reply(503, 18, "HEC is unhealthy, queues are full") if self.busy else self._reply(200, 17, "HEC is healthy")
        if request.path not in EVENT_PATHS:
            return Answer(404, b'{"text":"The requested URL was not found on this server.","code":404}')
        denied = self._auth(request)
        if denied:
            return denied
        if self.busy:
            return self._reply(503, 9, "Server is busy")
        if len(request.body) > self.max_content_length:
            self.wire_errors.append("413: content too large")
            return Answer(413, f"Content-Length of {len(request.body)} too large (maximum is {self.max_content_length})".encode())
        channel = None
        if self.use_ack:
            channel, problem = self._channel(request)
            if problem:
                return problem
        envelopes, problem = self._parse(request.body)
        if problem:
            return problem
        for envelope in envelopes:
            envelope.setdefault("index", self.default_index)
        self.events.extend(envelopes)
        if channel is None:
            return self._reply(200, 0, "Success")
        ack_id = self._next_ack.get(channel, 0)
        self._next_ack[channel] = ack_id + 1
        self._acks.setdefault(channel, {})[ack_id] = 0
        return self._reply(200, 0, "Success", ackId=ack_id)

    def _parse(self, body: bytes) -> tuple[list[dict[str, Any]], Answer | None]:
        text = body.decode("utf-8", errors="replace")
        if not text.strip():
            return [], self._reply(400, 5, "No data")
        decoder = json.JSONDecoder(parse_float=Decimal)
        envelopes: list[dict[str, Any]] = []
        position = 0
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            if position == len(text):
                return envelopes, None
            number = len(envelopes)
            try:
                envelope, position = decoder.raw_decode(text, position)
            except ValueError:
                return [], self._reply(400, 6, "Invalid data format", **{"invalid-event-number": number})
            if not isinstance(envelope, dict):
                return [], self._reply(400, 6, "Invalid data format", **{"invalid-event-number": number})
            if "event" not in envelope:
                return [], self._reply(400, 12, "Event field is required", **{"invalid-event-number": number})
            if envelope["event"] in ("", None, {}):
                return [], self._reply(400, 13, "Event field cannot be blank", **{"invalid-event-number": number})
            if "time" in envelope and not isinstance(envelope["time"], int | Decimal):
                return [], self._reply(400, 6, "Invalid data format", **{"invalid-event-number": number})
            if "index" in envelope and envelope["index"] not in self.indexes:
                return [], self._reply(400, 7, "Incorrect index", **{"invalid-event-number": number})
            event = envelope["event"]
            if isinstance(event, dict) and event.get("id") in self.refuse_ids:  # an injected refusal, not a wire error
                body = {"text": "Invalid data format", "code": 6, "invalid-event-number": number}
                return [], Answer(400, json.dumps(body).encode(), {"Content-Type": "application/json"})
            envelopes.append(envelope)

    def _ack(self, request: Request) -> Answer:
        denied = self._auth(request)
        if denied:
            return denied
        if not self.use_ack:
            return self._reply(400, 14, "ACK is disabled")
        channel, problem = self._channel(request)
        if problem or channel is None:
            return problem or self._reply(400, 10, "Data channel is missing")
        try:
            ids = json.loads(request.body)["acks"]
            assert isinstance(ids, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            return self._reply(400, 6, "Invalid data format")
        pending = self._acks.get(channel, {})
        result: dict[str, bool] = {}
        for ack_id in ids:
            if ack_id not in pending:
                result[str(ack_id)] = False  # unknown, or already reported true once
                continue
            pending[ack_id] += 1
            done = self.ack_after_polls is not None and pending[ack_id] >= self.ack_after_polls
            result[str(ack_id)] = done
            if done:
                del pending[ack_id]
        return Answer(200, json.dumps({"acks": result}).encode(), {"Content-Type": "application/json"})
