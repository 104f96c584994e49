"""A stand-in for a SIEM's webhook receiver that checks Standard Webhooks signatures.

This is a stand-in, not a real SIEM. It behaves as the Standard Webhooks specification asks
a receiver to: it requires ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
(400 when one is missing), refuses a timestamp more than 5 minutes away from its clock and a
request none of whose ``v1,`` signatures matches (401), computing HMAC-SHA256 over
``"{id}.{timestamp}.{body}"`` itself (independently of the sink's code), with the secret's
UTF-8 bytes as key or, for a ``whsec_`` secret, the base64 after the prefix. The body must be
JSON (an object, or an array of objects in batch mode; 400 otherwise). Deliveries are kept in
``deliveries``; ``events`` keeps each event once, deduplicated on ``webhook-id`` as the spec
tells receivers to.

Faults: ``gone = True`` answers 410 Gone; ``refuse_ids`` answers 422 for those audit ids; the
rest (outage, 429 with Retry-After, 5xx, timeouts) come from
:class:`~audit_pipeline_tests.standins.receiver.Receiver`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from audit_pipeline_tests.standins.receiver import Answer, Receiver, Request

TOLERANCE_SECONDS = 300


def hmac_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode("utf-8")


class WebhookReceiver(Receiver):
    def __init__(self, secret: str = "hmac-secret", path: str = "/api/ingest", batch: bool = False) -> None:
        super().__init__()
        self.secret = secret
        self.path = path
        self.batch = batch
        self.gone = False
        self.refuse_ids: set[str] = set()
        self.deliveries: list[Request] = []
        self.events: list[dict[str, Any]] = []
        self.wire_errors: list[str] = []
        self._seen: set[str] = set()

    @property
    def endpoint(self) -> str:
        return self.url + self.path

    def _no(self, status: int, message: str) -> Answer:
        self.wire_errors.append(f"{status}: {message}")
        return Answer(status, json.dumps({"error": message}).encode(), {"Content-Type": "application/json"})

    def handle(self, request: Request) -> Answer:
        if request.path != self.path or request.method != "POST":
            return Answer(404, b"not found")
        if self.gone:
            return Answer(410, b'{"error":"this endpoint has been removed"}')
        msg_id = request.headers.get("webhook-id")
        stamp = request.headers.get("webhook-timestamp")
        signatures = request.headers.get("webhook-signature")
        if not (msg_id and stamp and signatures):
            return self._no(400, "missing webhook-id, webhook-timestamp or webhook-signature")
        if "." in msg_id:
            return self._no(400, "webhook-id must not contain '.'")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > TOLERANCE_SECONDS:
            return self._no(401, "timestamp outside the tolerance")
        signed = f"{msg_id}.{stamp}.".encode() + request.body
        expected = base64.b64encode(hmac.new(hmac_key(self.secret), signed, hashlib.sha256).digest()).decode()
        offered = [s.partition(",") for s in signatures.split(" ")]
        if not any(version == "v1" and hmac.compare_digest(sig, expected) for version, _, sig in offered):
            return self._no(401, "no matching signature")
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return self._no(400, "Content-Type must be application/json")
        try:
            payload = json.loads(request.body)
        except ValueError:
            return self._no(400, "body is not JSON")
        items = payload if self.batch else [payload]
        if not isinstance(items, list) or not all(isinstance(e, dict) for e in items):
            return self._no(400, "body must be a JSON object" + (" array" if self.batch else ""))
        if any(e.get("id") in self.refuse_ids for e in items):
            return Answer(422, b'{"error":"event refused by a receiver rule"}')
        self.deliveries.append(request)
        if msg_id not in self._seen:
            self._seen.add(msg_id)
            self.events.extend(items)
        return Answer(204)
