"""Datadog Logs: the HTTP logs intake v2, ``POST https://http-intake.logs.<site>/api/v2/logs``.

Each audit event becomes one log entry: the reserved attributes ``ddsource`` (our ``source``),
``service``, ``hostname``, ``ddtags``, ``status`` (``warn`` for failed actions), a one-line
``message``, ``timestamp`` (milliseconds since the epoch), and every audit column as a top-level
attribute, spliced from the event's canonical NDJSON line so values are never re-encoded
(``created_at`` keeps its microseconds, ``id`` lets Datadog users drop duplicates).

Limits from Datadog's "Send logs" reference, enforced here rather than discovered: at most
1,000 entries and 5 MB uncompressed per request (a batch is split into several requests), and
1 MB per entry. Datadog would cut a larger entry where it pleases; instead the sink sends it with
its largest fields cut to fit and marked (``truncated: true``, ``truncated_fields``,
``event_sha256``, see :mod:`audit_pipeline.sinks.oversize`), and the engine keeps the whole event
in the dead letters with the reason. A 413 splits the request in two.

Old events: Datadog keeps a log's own timestamp only when it is at most 18 hours in the past
(2 hours in the future). An event outside that window (a catch-up after an outage, a backfill)
is sent without ``timestamp``, so Datadog stamps it with the intake time, and tagged
``late:true`` (``future:true`` for clock skew); its true time stays in ``created_at``.
``late_events: dead_letter`` sends such events to the dead letters instead.

Delivery is at-least-once: a 2xx covers every entry of that request, a 408/429/5xx or a lost
connection leaves the request's events to be retried (``Retry-After`` is passed on to the
engine), and later requests of the same batch are not sent until it succeeds. Datadog has no
idempotency key, so a request whose answer was lost may be indexed twice. 400/401/403 stop
the sink with a message naming the setting; the position stays where it is.
"""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pyarrow as pa

from audit_pipeline.config.sections.datadog import DatadogSettings
from audit_pipeline.config.settings import parse_section
from audit_pipeline.core.isotime import epoch_micros
from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.sinks import http_client, oversize
from audit_pipeline.sinks.base import DeliveryReport, EventBatch, Outcome, Sink, SinkFailure
from audit_pipeline.sinks.schema_mapping import as_schema, encoder

__all__ = ["DatadogSink"]

MAX_ENTRIES = 1_000
MAX_PAYLOAD_BYTES = 5_000_000
MAX_ENTRY_BYTES = 1_000_000
#: A cut entry stays this far below 1 MB, whatever whitespace a receiver measures it with.
_FIT_MARGIN = 4_096
MAX_AGE = dt.timedelta(hours=18)
MAX_AHEAD = dt.timedelta(hours=2)
#: Room for the request to reach Datadog (and a retry or two) before its timestamps age out.
WINDOW_MARGIN = dt.timedelta(minutes=10)
_MICROSECOND = dt.timedelta(microseconds=1)


class DatadogSink(Sink):
    name = "datadog"
    max_batch_events = MAX_ENTRIES
    #: Canonical NDJSON bytes per batch; the envelope adds about 300 bytes per entry, and
    #: requests are split at 5 MB regardless.
    max_batch_bytes = 4_000_000

    def __init__(self, config: DatadogSettings, clock: Any = None, where: str = "sinks.datadog") -> None:
        self.config = config
        self._encode = encoder(config.target_schema, config.ocsf, where)  # schema: ocsf
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._client = http_client.client(config.timeout_seconds)
        self._url = config.intake_url()
        self._key = config.api_key.get_secret_value()
        tags = list(config.tags) if isinstance(config.tags, list) else []
        self._tags = ",".join(tags)
        enc = http_client.json_string
        self._prefix = b'{"ddsource":%s,"service":%s,"hostname":%s,"ddtags":' % (enc(config.source), enc(config.service), enc(config.hostname))

    @classmethod
    def from_config(cls, raw: dict[str, Any], where: str = "sinks.datadog") -> DatadogSink:
        """Build from the ``sinks.datadog`` section (see :mod:`audit_pipeline.sinks.registry`)."""
        return cls(parse_section(DatadogSettings, raw, where), where=where)

    def close(self) -> None:
        self._client.close()

    # -- building entries ---------------------------------------------------------------------
    def _head(self, window: str, failed: bool) -> bytes:
        """Everything before ``message``: fixed per sink, apart from the window tag and the status."""
        tags = self._tags if window == "in" else _join_tags(self._tags, f"{window}:true")
        return b'%s%s,"status":"%s","message":' % (self._prefix, http_client.json_string(tags), b"warn" if failed else b"info")

    def _entries(self, events: EventBatch, report: DeliveryReport) -> list[bytes | None]:
        now_us = epoch_micros(self._clock())
        oldest = now_us - (MAX_AGE - WINDOW_MARGIN) // _MICROSECOND
        newest = now_us + (MAX_AHEAD - WINDOW_MARGIN) // _MICROSECOND
        cols = _columns(events.batch, ("type", "result", "actor_email", "actor_id", "resource_type", "resource_id"))
        created = events.batch.column(COLUMNS.index("created_at")).cast(pa.int64()).to_pylist()
        heads = {(w, f): self._head(w, f) for w in ("in", "late", "future") for f in (False, True)}
        entries: list[bytes | None] = []
        for i, line in enumerate(events.lines()):
            us = created[i]
            window = "in" if oldest <= us <= newest else "late" if us < oldest else "future"
            if window != "in" and self.config.late_events == "dead_letter":
                report.outcomes[i] = Outcome.REJECTED
                report.reasons[i] = (
                    "created_at is outside the window Datadog keeps a log's own time (18 h back, 2 h ahead);"
                    " dead-lettered because sinks.datadog.late_events is dead_letter"
                )
                entries.append(None)
                continue
            stamp = b',"timestamp":%d' % (us // 1000) if window == "in" else b""
            head = b"".join((heads[window, cols["result"][i] == "failure"], http_client.json_string(_summary(cols, i)), stamp, b","))
            entry = head + self._attributes(line)
            if len(entry) > MAX_ENTRY_BYTES:
                fitted = oversize.fit(line, MAX_ENTRY_BYTES - _FIT_MARGIN - len(head) + 1)
                if fitted is None:
                    report.outcomes[i] = Outcome.REJECTED
                    report.reasons[i] = f"the log entry is {len(entry):,} bytes, over Datadog's 1 MB per-log limit, and cannot be cut to fit"
                    entries.append(None)
                    continue
                report.truncated[i] = oversize.reason("Datadog", "1 MB per-log limit", len(entry), fitted[1])
                entry = head + self._attributes(fitted[0])
            entries.append(entry)
        return entries

    def _attributes(self, line: bytes) -> bytes:
        """The rest of an entry after the head: the exported columns at the top level, or the OCSF event under
        ``ocsf`` (its ``status`` and ``message`` would otherwise overwrite Datadog's reserved attributes)."""
        return b'"ocsf":' + line + b"}" if self.config.target_schema == "ocsf" else line[1:]

    # -- sending ------------------------------------------------------------------------------
    def send(self, events: EventBatch) -> DeliveryReport:
        events = as_schema(events, self.config.target_schema, self._encode)
        report = DeliveryReport([Outcome.RETRY] * len(events))
        entries = self._entries(events, report)
        pending = [i for i, e in enumerate(entries) if e is not None]
        for chunk in _chunks(pending, entries):
            if not self._post(chunk, entries, report):
                break
        return http_client.explain_unsent(report)

    def _post(self, chunk: Sequence[int], entries: list[bytes | None], report: DeliveryReport) -> bool:
        """Send one request; False when it must be retried (and nothing after it should be sent)."""
        body = b"[" + b",".join(entries[i] or b"" for i in chunk) + b"]"
        headers = {"DD-API-KEY": self._key, "Content-Type": "application/json", "Content-Encoding": "gzip"}
        try:
            response = self._client.post(self._url, content=gzip.compress(body, compresslevel=3), headers=headers)
        except httpx.HTTPError as exc:
            setting = "sinks.datadog.url" if self.config.url else "sinks.datadog.site"
            reason = http_client.transport_reason(exc, self.config.timeout_seconds, http_client.host_of(self._url), setting)
            http_client.mark(report, chunk, Outcome.RETRY, f"Datadog: {reason}")
            return False
        status = response.status_code
        if 200 <= status < 300:
            http_client.mark(report, chunk, Outcome.DELIVERED)
            return True
        if status == 413:
            if len(chunk) == 1:
                http_client.mark(report, chunk, Outcome.REJECTED, f"Datadog answered 413 Payload Too Large for this single entry ({len(body):,} bytes)")
                return True
            half = len(chunk) // 2
            return self._post(chunk[:half], entries, report) and self._post(chunk[half:], entries, report)
        if status in (408, 429) or status >= 500:
            wait = http_client.retry_after(response)
            if wait is not None:
                report.retry_after = max(report.retry_after or 0.0, wait)
            http_client.mark(report, chunk, Outcome.RETRY, f"Datadog answered {status}: {http_client.excerpt(response, [self._key])}")
            return False
        raise SinkFailure(self._failure(response))

    def _failure(self, response: httpx.Response) -> str:
        status = response.status_code
        detail = http_client.excerpt(response, [self._key])
        where = "sinks.datadog.url" if self.config.url else "sinks.datadog.site"
        if status == 401:
            return f"Datadog answered 401 Unauthorized (API key missing); set sinks.datadog.api_key, e.g. api_key: ${{DD_API_KEY}}. {detail}"
        if status == 403:
            return (
                f"Datadog answered 403 Forbidden: the API key was refused; check sinks.datadog.api_key and that {where}"
                f" ({self.config.url or self.config.site}) is the site the key belongs to. {detail}"
            )
        if status == 400:
            return f"Datadog answered 400 Bad Request (malformed payload) at {where}; a proxy may be altering requests. {detail}"
        return f"Datadog answered {status} at {where} ({self.config.url or self.config.site}); check that setting. {detail}"


def _chunks(pending: list[int], entries: list[bytes | None]) -> Iterator[list[int]]:
    """Runs of entries within Datadog's per-request limits (1,000 entries, 5 MB uncompressed)."""
    chunk: list[int] = []
    size = 2
    for i in pending:
        length = len(entries[i] or b"") + 1
        if chunk and (len(chunk) == MAX_ENTRIES or size + length > MAX_PAYLOAD_BYTES):
            yield chunk
            chunk, size = [], 2
        chunk.append(i)
        size += length
    if chunk:
        yield chunk


def _summary(cols: dict[str, list[Any]], i: int) -> str:
    actor = cols["actor_email"][i] or cols["actor_id"][i] or "system"
    resource = "/".join(v for v in (cols["resource_type"][i], cols["resource_id"][i]) if v)
    return f"{cols['type'][i]} {cols['result'][i]} by {actor}" + (f" on {resource}" if resource else "")


def _columns(batch: pa.RecordBatch, names: Sequence[str]) -> dict[str, list[Any]]:
    return {name: batch.column(COLUMNS.index(name)).to_pylist() for name in names}


def _join_tags(tags: str, extra: str) -> str:
    return f"{tags},{extra}" if tags else extra
