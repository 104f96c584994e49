"""Signed webhooks: one sink per entry of ``sinks.webhooks``, named ``webhook:<name>``.

Each event is POSTed on its own (``batch: true`` sends JSON arrays of up to ``batch_size``
events instead), the body being the event exactly as the NDJSON export prints it. Requests
are signed the Standard Webhooks way: ``webhook-id`` (the audit log id, the same on every
retry, so receivers can drop duplicates), ``webhook-timestamp`` (epoch seconds of this
attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``.
The key is the secret's UTF-8 bytes, or for a ``whsec_`` secret the base64 after the prefix.
During a key rotation ``secret`` may list several secrets; every signature is then sent,
space-separated, and a receiver accepts the request if any one matches.

Answers: 2xx delivers. 410 Gone means the receiver asks us to stop: the webhook is disabled
(:class:`SinkFailure` naming it; this process sends it nothing more, and a later run stops at
its first request the same way) with its position kept, so nothing is lost or dead-lettered
until the entry is fixed, removed or set ``enabled: false``. 401/403 also stop it, since every
later event would be refused the same way.
Timeouts, connection failures, 3xx, 408, 429 and 5xx are retried (``Retry-After`` passed on)
and the events after the failing one wait, so a receiver sees events in order. Any other 4xx
rejects that event into the dead letters with the receiver's answer as the reason.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from standardwebhooks.webhooks import Webhook

from audit_pipeline.config.sections.webhook import WebhookSettings, _key
from audit_pipeline.config.settings import parse_section
from audit_pipeline.sinks import http_client
from audit_pipeline.sinks.base import DeliveryReport, EventBatch, Outcome, Sink, SinkFailure
from audit_pipeline.sinks.schema_mapping import as_schema, encoder

_SAFE_ID = re.compile(r"^[A-Za-z0-9_\-:+/=~]+$")


def webhook_id(audit_id: str) -> str:
    """The ``webhook-id`` for an event: its audit id, percent-encoded only when it holds
    characters the spec or HTTP headers forbid (``.``, spaces, non-ASCII)."""
    if _SAFE_ID.match(audit_id):
        return audit_id
    return quote(audit_id, safe="-_:+/=~").replace(".", "%2E")


def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<signature>`` for each key, space-separated."""
    when = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    text = body.decode("utf-8")
    return " ".join(Webhook(key).sign(msg_id, when, text) for key in keys)


class WebhookSink(Sink):
    def __init__(self, config: WebhookSettings, clock: Callable[[], float] = time.time, where: str = "sinks.webhooks") -> None:
        self.config = config
        self.where = where
        self.name = f"webhook:{config.name}"
        self.max_batch_events = config.batch_size if config.batch else 20
        self.max_batch_bytes = 4_000_000
        self._clock = clock
        self._keys = [_key(s, "secret") for s in config.secrets()]
        self._secret_values = [*config.secrets(), *(v.get_secret_value() for v in config.headers.values())]
        self._extra = {k: v.get_secret_value() for k, v in config.headers.items()}
        self._client = http_client.client(config.timeout_seconds)
        self._gone: str | None = None
        self._encode = encoder(config.target_schema, config.ocsf, where)  # schema: ocsf

    @classmethod
    def from_config(cls, raw: dict[str, Any], where: str = "sinks.webhooks[0]") -> WebhookSink:
        """Build one webhook from its entry in ``sinks.webhooks`` (the registry builds one per entry)."""
        return cls(parse_section(WebhookSettings, raw, where), where=where)

    def accepts(self, event_type: str) -> bool:
        name = f"audit.{event_type}"
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.config.events)

    def close(self) -> None:
        self._client.close()

    def send(self, events: EventBatch) -> DeliveryReport:
        if self._gone:
            raise SinkFailure(self._gone)
        events = as_schema(events, self.config.target_schema, self._encode)
        report = DeliveryReport([Outcome.RETRY] * len(events))
        accepted = [self.accepts(t) for t in events.types]
        wanted = [i for i, ok in enumerate(accepted) if ok]
        http_client.mark(report, (i for i, ok in enumerate(accepted) if not ok), Outcome.DELIVERED)  # not ours: nothing to send
        size = self.config.batch_size if self.config.batch else 1
        requests = [wanted[n : n + size] for n in range(0, len(wanted), size)]
        for indices in requests:
            if not self._post(events, indices, report):
                break
        return http_client.explain_unsent(report)

    def _post(self, events: EventBatch, indices: list[int], report: DeliveryReport) -> bool:
        if self.config.batch:
            body = b"[" + b",".join(events.line(i) for i in indices) + b"]"
            digest = hashlib.sha256("\n".join(events.ids[i] for i in indices).encode()).hexdigest()[:32]
            msg_id = f"batch_{digest}"
        else:
            body = events.line(indices[0])
            msg_id = webhook_id(events.ids[indices[0]])
        timestamp = int(self._clock())
        headers = {
            **self._extra,
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._keys, msg_id, timestamp, body),
        }
        try:
            response = self._client.post(self.config.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            reason = http_client.transport_reason(
                exc, self.config.timeout_seconds, http_client.host_of(self.config.url), f"{self.where}.url (name: {self.config.name})"
            )
            http_client.mark(report, indices, Outcome.RETRY, f"webhook {self.config.name!r}: {reason}")
            return False
        status = response.status_code
        if 200 <= status < 300:
            http_client.mark(report, indices, Outcome.DELIVERED)
            return True
        detail = http_client.excerpt(response, self._secret_values)
        if status == 410:
            self._gone = (
                f"webhook {self.config.name!r} answered 410 Gone: the receiver asks us to stop, so this webhook is disabled."
                f" Fix or remove its entry in sinks.webhooks (name: {self.config.name}); its position is kept. {detail}"
            ).strip()
            raise SinkFailure(self._gone)
        if status in (401, 403):
            raise SinkFailure(
                f"webhook {self.config.name!r} answered {status}: the receiver refuses our requests; check that its secret matches"
                f" the secret (and any auth header in headers) of sinks.webhooks entry {self.config.name!r}. {detail}".strip()
            )
        if 400 <= status < 500 and status not in (408, 429):
            http_client.mark(report, indices, Outcome.REJECTED, f"webhook {self.config.name!r} answered {status}: {detail}")
            return True
        wait = http_client.retry_after(response)
        if wait is not None:
            report.retry_after = max(report.retry_after or 0.0, wait)
        http_client.mark(report, indices, Outcome.RETRY, f"webhook {self.config.name!r} answered {status}: {detail}")
        return False
