"""Splunk HTTP Event Collector: ``POST {hec_url}/services/collector/event`` with ``Authorization: Splunk <token>``.

Several events per request, as concatenated JSON envelopes (``{...}{...}``, the batch form
Splunk documents), each with ``time`` (epoch seconds with the exact microseconds of
``created_at``, written from the integer, never through a float), ``host``, ``source``,
``sourcetype``, ``index`` (omitted when unset, so the token's default index applies) and the
audit event, spliced unchanged from its canonical NDJSON line, as ``event``.

HEC answers ``{"text": ..., "code": N}``; codes map to outcomes as Splunk's HEC error table
reads: token problems (1-4, HTTP 401/403), a refused index (7) and channel/acknowledgement
mismatches (10, 11, 14) stop the sink with a message naming the setting to fix; busy or failing
servers (8, 9, HTTP 429/5xx) are retried, honouring ``Retry-After``; a request over the
server's ``max_content_length`` (HTTP 413) is split; an invalid event (5, 6, 12, 13, 15 with
``invalid-event-number``) goes to the dead letters and the rest of its request is resent.

A plain 200 only means HEC parsed the request. With ``use_ack: true`` every request carries an
``X-Splunk-Request-Channel`` and its events count as delivered only once
``/services/collector/ack`` reports the ``ackId`` indexed (the requests of a batch are sent
first, then their acks polled together); if that does not happen within
``ack_timeout_seconds`` the events are retried. Delivery is at-least-once either way (HEC has
no idempotency key; each event's ``id`` lets Splunk users drop duplicates).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import pyarrow as pa

from audit_pipeline.config.sections.splunk import EVENT_PATH, SplunkSettings
from audit_pipeline.config.settings import parse_section
from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.sinks import http_client, oversize
from audit_pipeline.sinks.base import DeliveryReport, EventBatch, Outcome, Sink, SinkFailure
from audit_pipeline.sinks.schema_mapping import as_schema, encoder

ACK_PATH = "/services/collector/ack"
_TOKEN_CODES = {1: "Token disabled", 2: "Token is required", 3: "Invalid authorization", 4: "Invalid token"}
_BAD_EVENT_CODES = {5, 6, 12, 13, 15}
_RETRY_CODES = {8, 9, 18, 19, 20}


class SplunkSink(Sink):
    name = "splunk"
    max_batch_events = 5_000
    max_batch_bytes = 4_000_000

    def __init__(self, config: SplunkSettings, sleep: Callable[[float], None] = time.sleep, where: str = "sinks.splunk") -> None:
        self.config = config
        self._encode = encoder(config.target_schema, config.ocsf, where)  # schema: cim | ocsf
        self._sleep = sleep
        verify: bool | str = config.tls_ca_file or config.tls_verify
        self._client = http_client.client(config.timeout_seconds, verify=verify)
        self._token = config.hec_token.get_secret_value()
        self._headers = {"Authorization": f"Splunk {self._token}", "Content-Type": "application/json"}
        if config.use_ack:
            self._headers["X-Splunk-Request-Channel"] = str(uuid.uuid4())
        enc = http_client.json_string
        index = b',"index":' + enc(config.index) if config.index else b""
        # Splunk's OCSF-CIM add-on reads sourcetypes prefixed ocsf: (Splunk's Edge Processor "Convert data to OCSF format" docs)
        sourcetype = "ocsf:hellojohn" if config.target_schema == "ocsf" and config.sourcetype == "_json" else config.sourcetype
        self._meta = b',"host":%s,"source":%s,"sourcetype":%s%s,"event":' % (enc(config.host), enc(config.source), enc(sourcetype), index)

    @classmethod
    def from_config(cls, raw: dict[str, Any], where: str = "sinks.splunk") -> SplunkSink:
        """Build from the ``sinks.splunk`` section (see :mod:`audit_pipeline.sinks.registry`)."""
        return cls(parse_section(SplunkSettings, raw, where), where=where)

    def close(self) -> None:
        self._client.close()

    def _envelopes(self, events: EventBatch, report: DeliveryReport) -> list[bytes | None]:
        created = events.batch.column(COLUMNS.index("created_at")).cast(pa.int64()).to_pylist()
        envelopes: list[bytes | None] = []
        limit = self.config.max_request_bytes
        for i, line in enumerate(events.lines()):
            head = b'{"time":' + _epoch_seconds(created[i]) + self._meta
            envelope = head + line + b"}"
            if len(envelope) > limit:
                fitted = oversize.fit(line, limit - len(head) - 1)
                if fitted is None:
                    http_client.mark(
                        report, [i], Outcome.REJECTED, f"the event is {len(envelope):,} bytes, over sinks.splunk.max_request_bytes, and cannot be cut to fit"
                    )
                    envelopes.append(None)
                    continue
                report.truncated[i] = oversize.reason("Splunk HEC", f"max_request_bytes ({limit:,})", len(envelope), fitted[1])
                envelope = head + fitted[0] + b"}"
            envelopes.append(envelope)
        return envelopes

    def send(self, events: EventBatch) -> DeliveryReport:
        events = as_schema(events, self.config.target_schema, self._encode)
        report = DeliveryReport([Outcome.RETRY] * len(events))
        envelopes = self._envelopes(events, report)
        awaiting: dict[int, Sequence[int]] = {}  # ackId -> the events of that request
        for chunk in _chunks(envelopes, self.config.max_request_bytes):
            if not self._post(chunk, envelopes, report, awaiting):
                break
        if awaiting:
            self._await_acks(report, awaiting)
        return http_client.explain_unsent(report)

    def _post(self, chunk: Sequence[int], envelopes: list[bytes | None], report: DeliveryReport, awaiting: dict[int, Sequence[int]]) -> bool:
        """Send one request; False when it must be retried (and nothing after it should be sent)."""
        body = b"".join(envelopes[i] or b"" for i in chunk)
        try:
            response = self._client.post(self.config.hec_url + EVENT_PATH, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            reason = http_client.transport_reason(exc, self.config.timeout_seconds, http_client.host_of(self.config.hec_url), "sinks.splunk.hec_url")
            http_client.mark(report, chunk, Outcome.RETRY, f"Splunk HEC: {reason}")
            return False
        status, answer = response.status_code, _answer(response)
        code = answer.get("code")
        if status == 200 and code in (0, None):
            if self.config.use_ack:
                ack_id = answer.get("ackId")
                if not isinstance(ack_id, int):
                    raise SinkFailure("Splunk HEC returned no ackId although sinks.splunk.use_ack is true; enable indexer acknowledgement on the token")
                awaiting[ack_id] = chunk  # delivered once Splunk confirms it indexed them
                return True
            http_client.mark(report, chunk, Outcome.DELIVERED)
            return True
        if status in (401, 403) or code in _TOKEN_CODES or code in (21, 22):
            text = _TOKEN_CODES.get(code) if isinstance(code, int) else None
            raise SinkFailure(
                f"Splunk HEC refused the token (HTTP {status}, code {code}: {text or answer.get('text', '')});"
                " check sinks.splunk.hec_token, e.g. hec_token: ${SPLUNK_HEC_TOKEN}, and that the token is enabled"
            )
        if code == 7:
            raise SinkFailure(
                f"Splunk HEC refused the index (code 7: Incorrect index); check sinks.splunk.index"
                f" ({self.config.index or 'unset: the token default'}) against the token's allowed indexes"
            )
        if code in (10, 11):
            raise SinkFailure(
                f"Splunk HEC wants an indexer-acknowledgement channel (code {code}: {answer.get('text', '')});"
                " the token has indexer acknowledgement enabled, so set sinks.splunk.use_ack: true"
            )
        if code == 14:
            raise SinkFailure("Splunk HEC has indexer acknowledgement disabled for this token (code 14); set sinks.splunk.use_ack: false")
        if status == 413:
            if len(chunk) == 1:
                http_client.mark(
                    report, chunk, Outcome.REJECTED, f"Splunk HEC answered 413 for this single event ({len(body):,} bytes); raise max_content_length in Splunk"
                )
                return True
            half = len(chunk) // 2
            return self._post(chunk[:half], envelopes, report, awaiting) and self._post(chunk[half:], envelopes, report, awaiting)
        if status in (408, 429) or status >= 500 or code in _RETRY_CODES:
            wait = http_client.retry_after(response)
            if wait is not None:
                report.retry_after = max(report.retry_after or 0.0, wait)
            http_client.mark(report, chunk, Outcome.RETRY, f"Splunk HEC answered {status}: {http_client.excerpt(response, [self._token])}")
            return False
        if status == 400 and code in _BAD_EVENT_CODES:
            return self._reject_bad_event(chunk, envelopes, report, answer, awaiting)
        raise SinkFailure(
            f"Splunk HEC answered HTTP {status} ({http_client.excerpt(response, [self._token])}); check sinks.splunk.hec_url ({self.config.hec_url})"
        )

    def _reject_bad_event(
        self, chunk: Sequence[int], envelopes: list[bytes | None], report: DeliveryReport, answer: dict[str, Any], awaiting: dict[int, Sequence[int]]
    ) -> bool:
        reason = f"Splunk HEC refused the event (code {answer.get('code')}: {answer.get('text', '')})"
        position = answer.get("invalid-event-number")
        if isinstance(position, int) and 0 <= position < len(chunk):
            # Splunk does not say whether the events before it were indexed: resend them.
            http_client.mark(report, [chunk[position]], Outcome.REJECTED, reason)
            http_client.mark(report, [i for i in chunk if i != chunk[position]], Outcome.RETRY, "resent: another event of the same request was refused")
            return False
        if len(chunk) == 1:
            http_client.mark(report, chunk, Outcome.REJECTED, reason)
            return True
        half = len(chunk) // 2
        return self._post(chunk[:half], envelopes, report, awaiting) and self._post(chunk[half:], envelopes, report, awaiting)

    def _await_acks(self, report: DeliveryReport, awaiting: dict[int, Sequence[int]]) -> None:
        """Poll ``/services/collector/ack`` for every request of this batch at once, until all are
        indexed or ``ack_timeout_seconds`` pass; unconfirmed requests are retried."""
        deadline = time.monotonic() + self.config.ack_timeout_seconds
        delay = 0.2
        while True:
            for ack_id in self._acknowledged(list(awaiting)):
                http_client.mark(report, awaiting.pop(ack_id), Outcome.DELIVERED)
            if not awaiting:
                return
            if time.monotonic() + delay > deadline:
                for ack_id, chunk in awaiting.items():
                    http_client.mark(
                        report,
                        chunk,
                        Outcome.RETRY,
                        f"Splunk did not confirm indexing of ackId {ack_id} within {self.config.ack_timeout_seconds:g} s"
                        " (sinks.splunk.ack_timeout_seconds); resending, which may index the events twice",
                    )
                return
            self._sleep(delay)
            delay = min(delay * 2, 2.0)

    def _acknowledged(self, ack_ids: list[int]) -> list[int]:
        """The ack ids Splunk reports indexed (each is reported true only once)."""
        try:
            response = self._client.post(self.config.hec_url + ACK_PATH, content=json.dumps({"acks": ack_ids}), headers=self._headers)
        except httpx.HTTPError:
            return []  # polled again until the deadline
        answer = _answer(response)
        if answer.get("code") == 14:
            raise SinkFailure("Splunk HEC has indexer acknowledgement disabled for this token (code 14); set sinks.splunk.use_ack: false")
        if response.status_code in (401, 403):
            raise SinkFailure(f"Splunk HEC refused the token when polling acknowledgements (HTTP {response.status_code}); check sinks.splunk.hec_token")
        acks = answer.get("acks")
        return [i for i in ack_ids if isinstance(acks, dict) and acks.get(str(i)) is True]


def _chunks(envelopes: list[bytes | None], limit: int) -> Iterator[list[int]]:
    chunk: list[int] = []
    size = 0
    for i, envelope in enumerate(envelopes):
        if envelope is None:
            continue
        if chunk and size + len(envelope) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(i)
        size += len(envelope)
    if chunk:
        yield chunk


def _answer(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _epoch_seconds(us: int) -> bytes:
    """``1705276800.123456`` from integer microseconds, exact (no float), also before 1970."""
    sign = "-" if us < 0 else ""
    seconds, micros = divmod(abs(us), 1_000_000)
    return f"{sign}{seconds}.{micros:06d}".encode()
