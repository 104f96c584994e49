"""Elasticsearch sink: daily indices, an explicit index template, exactly-once through ``_id``.

* Every event is a bulk ``create`` with ``_id`` = the audit log id, into the index named by the
  event's UTC ``created_at`` (``hellojohn-audit-%Y.%m.%d`` by default, as the Logstash recipe
  named them).  A replay after a crash gets a per-item ``409`` for ids already indexed, which
  counts as delivered: the index never holds an event twice.
* The bulk response is read item by item (failures hide inside an HTTP 200): ``409`` delivered,
  ``429`` and ``5xx`` retried, other ``4xx`` dead-lettered with Elasticsearch's reason.  A request
  that fails as a whole (connection, timeout, ``429``, ``5xx``) is retried; ``413`` splits it.
* The bulk body is built by Arrow kernels from the events' NDJSON lines as exported, with no
  per-event JSON encoding, and sent over plain HTTP (:mod:`.elasticsearch_http`): the official
  client is imported only by retention, which lists and deletes indices.
* Versions: the client's major version must be the server's (the 9.x client sends
  ``compatible-with=9``, which 8.x servers refuse).  This release supports Elasticsearch 9.x;
  with an 8.x server install ``elasticsearch>=8,<9`` (the calls used here exist in both).
  OpenSearch is refused by the client's product check.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import numpy as np
import orjson

from audit_pipeline.config.sections.elasticsearch import ElasticsearchSettings, _redact
from audit_pipeline.config.settings import parse_section
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.core.retry_after import parse_retry_after
from audit_pipeline.sinks import http_client, oversize
from audit_pipeline.sinks.base import DeliveryReport, EventBatch, Outcome, Sink, SinkFailure
from audit_pipeline.sinks.elasticsearch_bulk import ACTION_ROOM, TEMPLATE_VERSION, bulk_body, index_mappings, template_patterns
from audit_pipeline.sinks.elasticsearch_http import ApiError, ElasticsearchHttp, NotElasticsearch, client_version
from audit_pipeline.sinks.schema_mapping import as_schema, encoder

__all__ = ["ElasticsearchSink"]

#: A bulk answer whose every item succeeded starts like this (``took`` first unless filtered out).
#: ``send`` then needs none of the per-item answers: building those dicts cost about 3 us per
#: event, more than encoding the event (Elasticsearch sets ``errors`` whenever any item failed).
_BULK_ALL_OK = re.compile(rb'\s*\{\s*(?:"took"\s*:\s*\d+\s*,\s*)?"errors"\s*:\s*false\s*[,}]')
#: What the bulk answer is cut down to (``filter_path``): per item, its status and error only.
_BULK_FILTER = {"filter_path": "errors,items.*.status,items.*.error"}


def _reason(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    text = f"{error.get('type', 'error')}: {error.get('reason', '')}".strip()
    cause = error.get("caused_by")
    if isinstance(cause, dict):
        text += f" (caused by {cause.get('type', '')}: {cause.get('reason', '')})"
    return text


class ElasticsearchSink(Sink):
    name = "elasticsearch"
    #: Bulk requests are independent (``create`` with ``_id``): two in flight keep the cluster busy while the next is built.
    default_concurrency = 2

    def __init__(self, settings: ElasticsearchSettings, *, where: str = "sinks.elasticsearch", client: Any = None) -> None:
        self.settings = settings
        self.where = where
        self.max_batch_events = settings.batch_events
        self.max_batch_bytes = settings.batch_bytes
        urls = [settings.url] if isinstance(settings.url, str) else list(settings.url)
        self.description = ", ".join(_redact(u) for u in urls)
        self._client = client
        self._http: ElasticsearchHttp | None = None
        #: ``schema: ecs`` maps each batch to ECS documents (after the sink's privacy settings); None sends the exported lines.
        self._encode = encoder(settings.target_schema, settings.ocsf, where, ecs_original=settings.ecs_original)

    @classmethod
    def from_config(cls, raw: Any, where: str = "sinks.elasticsearch") -> ElasticsearchSink:
        return cls(parse_section(ElasticsearchSettings, raw, where), where=where)

    @property
    def api(self) -> ElasticsearchHttp:
        """The HTTP connection the sink itself uses (info, template, bulk)."""
        if self._http is None:
            self._http = ElasticsearchHttp(self.settings)
        return self._http

    @property
    def client(self) -> Any:
        """The official client, for what the sink does not do itself (retention lists and deletes indices)."""
        if self._client is None:
            from elasticsearch import Elasticsearch

            s = self.settings
            options: dict[str, Any] = {
                "request_timeout": s.request_timeout,
                "max_retries": 0,  # the engine retries, with backoff, and knows which items to resend
                "retry_on_timeout": False,
                "verify_certs": s.verify_certs,
                "http_compress": s.http_compress,
            }
            if s.ca_certs:
                options["ca_certs"] = s.ca_certs
            if s.api_key is not None:
                options["api_key"] = s.api_key.get_secret_value()
            elif s.username and s.password is not None:
                options["basic_auth"] = (s.username, s.password.get_secret_value())
            try:
                self._client = Elasticsearch(s.url if isinstance(s.url, list) else [s.url], **options)
            except ValueError as exc:
                raise ConfigError(f"{self.where}: {exc}") from None
        return self._client

    # -- setup -----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Check the server speaks our client's major version, then install the index template."""
        info = self._call("reading the cluster info", lambda: self.api.json("GET", "/"))
        server = str(info.get("version", {}).get("number", "?"))
        client_major = client_version().split(".")[0]
        if server.split(".")[0] != client_major:
            raise SinkFailure(self._version_message(server))
        if self.settings.manage_template:
            self._install_template()

    def _version_message(self, server: str | None) -> str:
        client = client_version()
        major = client.split(".")[0]
        found = f"is version {server}" if server else f"refused the {major}.x client's compatible-with={major} header, so it runs another major version"
        return (
            f"Elasticsearch at {self.description} {found}, but the installed client is {client}: the client's major version must match "
            f"the server's. This release supports Elasticsearch {major}.x; for an 8.x server install the 8.x client "
            "(pip install 'elasticsearch>=8,<9')"
        )

    def _install_template(self) -> None:
        name = self.settings.template_name
        path = ElasticsearchHttp.template_path(name)
        try:
            current = self.api.json("GET", path)
            templates = current.get("index_templates", [])
            if templates and templates[0].get("index_template", {}).get("version") == self._template_version:
                return
        except ApiError as exc:
            if exc.status != 404:
                self._raise_for(exc, f"reading index template {name}", privilege="manage_index_templates")
                raise
        except Exception as exc:
            self._raise_for(exc, f"reading index template {name}", privilege="manage_index_templates")
            raise
        meta: dict[str, str] = {"managed_by": "audit_pipeline", "description": "HelloJohn audit events, one index per UTC day"}
        mappings = index_mappings()
        if self.settings.target_schema == "ecs":
            from audit_pipeline.schemas.ecs import ECS_VERSION
            from audit_pipeline.schemas.ecs import index_mappings as ecs_mappings

            meta["ecs_version"] = ECS_VERSION
            mappings = ecs_mappings()
        template = {
            "index_patterns": template_patterns(self.settings.index),
            "priority": self.settings.template_priority,
            "version": self._template_version,
            "_meta": meta,
            "template": {"mappings": mappings},
        }
        try:
            self.api.json("PUT", path, template)
        except Exception as exc:
            self._raise_for(exc, f"installing index template {name}", privilege="manage_index_templates")
            raise

    def _call(self, what: str, action: Any) -> Any:
        try:
            return action()
        except Exception as exc:
            self._raise_for(exc, what)
            raise

    def _raise_for(self, exc: BaseException, what: str, privilege: str = "create_doc and auto_configure") -> None:
        """Turn what cannot get better by waiting into a SinkFailure; let transient errors through."""
        if isinstance(exc, NotElasticsearch):
            raise SinkFailure(
                f"the server at {self.description} is not Elasticsearch (no X-Elastic-Product header; OpenSearch is not supported) ({self.where}.url)"
            ) from None
        if isinstance(exc, ApiError):
            status = exc.status
            kind = _error_type(exc.body)
            if status == 401:
                raise SinkFailure(
                    f"Elasticsearch at {self.description} refused the credentials (401) while {what}; check {self.where}.api_key or username/password"
                ) from None
            if status == 403 and kind != "cluster_block_exception":
                hint = " or set manage_template: false and let an administrator install it" if privilege == "manage_index_templates" else ""
                raise SinkFailure(
                    f"Elasticsearch at {self.description} denied {what} (403 {kind}); the credentials in {self.where} need the {privilege} privilege "
                    f"on {', '.join(template_patterns(self.settings.index))}{hint}"
                ) from None
            if status == 400 and kind == "media_type_header_exception":
                raise SinkFailure(self._version_message(None)) from None
            if status in (400, 404, 405, 406) or (400 <= status < 500 and status not in (408, 409, 413, 429)):
                raise SinkFailure(f"Elasticsearch at {self.description} refused {what}: {status} {_reason(_error(exc.body))} ({self.where})") from None

    # -- delivery --------------------------------------------------------------------------------
    @property
    def _template_version(self) -> int:
        # another number per schema: switching raw <-> ecs replaces the installed template
        return TEMPLATE_VERSION + (1000 if self.settings.target_schema == "ecs" else 0)

    def send(self, events: EventBatch) -> DeliveryReport:
        events = as_schema(events, self.settings.target_schema, self._encode)
        n = len(events)
        _, offsets = events.ndjson()
        big = np.flatnonzero(np.diff(offsets) > self.settings.max_content_length - ACTION_ROOM)
        if len(big):
            return self._send_with_oversized(events, [int(i) for i in big])
        body = bulk_body(events, self.settings.index)
        try:
            answer = self.api.request("PUT", "/_bulk", body=body, ndjson=True, params=_BULK_FILTER)
        except ApiError as exc:
            status = exc.status
            if status == 413:
                return self._split(events, "413 request too large (http.max_content_length)")
            retry_after = _retry_after(exc.headers)
            if status == 429 or status >= 500 or status == 408:
                return DeliveryReport.all(n, Outcome.RETRY, f"bulk request answered {status} {_error_type(exc.body)}", retry_after)
            self._raise_for(exc, "indexing events")
            return DeliveryReport.all(n, Outcome.RETRY, f"bulk request answered {status}", retry_after)
        except NotElasticsearch as exc:
            self._raise_for(exc, "indexing events")
            raise
        except httpx.TransportError as exc:
            reason = http_client.transport_reason(exc, self.settings.request_timeout, self.description, f"{self.where}.url")
            return DeliveryReport.all(n, Outcome.RETRY, f"Elasticsearch: {reason}")
        if _BULK_ALL_OK.match(answer[:80]):
            return DeliveryReport.all(n, Outcome.DELIVERED)
        try:
            result = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return DeliveryReport.all(n, Outcome.RETRY, f"the bulk answer is not JSON: {answer[:200]!r}")
        if not isinstance(result, dict):
            return DeliveryReport.all(n, Outcome.RETRY, f"the bulk answer is not a JSON object: {answer[:200]!r}")
        if not result.get("errors"):
            return DeliveryReport.all(n, Outcome.DELIVERED)
        items = result.get("items") or []
        if len(items) != n:
            return DeliveryReport.all(n, Outcome.RETRY, f"bulk response had {len(items)} items for {n} actions")
        outcomes: list[Outcome] = []
        reasons: dict[int, str] = {}
        for i, item in enumerate(items):
            answer = next(iter(item.values())) if item else {}
            status = int(answer.get("status", 0))
            if status in (200, 201, 409):
                outcomes.append(Outcome.DELIVERED)
                continue
            error = answer.get("error")
            kind = error.get("type") if isinstance(error, dict) else None
            if status == 404 and kind == "index_not_found_exception":
                raise SinkFailure(
                    f"Elasticsearch at {self.description} has no index {error.get('index', '') if isinstance(error, dict) else ''} and does not create it "
                    f"(action.auto_create_index); allow {', '.join(template_patterns(self.settings.index))} or create the indices ({self.where}.index)"
                )
            if status == 429 or status >= 500 or status == 0 or kind == "cluster_block_exception":
                outcomes.append(Outcome.RETRY)
            else:
                outcomes.append(Outcome.REJECTED)
            reasons[i] = f"{status} {_reason(error)}"
        return DeliveryReport(outcomes, reasons)

    def _send_with_oversized(self, events: EventBatch, big: list[int]) -> DeliveryReport:
        """Events over ``max_content_length`` go alone, cut to fit and marked; the others as usual."""
        n = len(events)
        report = DeliveryReport([Outcome.RETRY] * n)
        rest = [i for i in range(n) if i not in set(big)]
        if rest:
            part = self.send(events.take(rest))
            for j, i in enumerate(rest):
                report.outcomes[i] = part.outcomes[j]
                if j in part.reasons:
                    report.reasons[i] = part.reasons[j]
            report.retry_after, report.failure = part.retry_after, part.failure
        limit = self.settings.max_content_length - ACTION_ROOM
        for i in big:
            line = events.line(i)
            fitted = oversize.fit(line, limit)
            if fitted is None:
                report.outcomes[i] = Outcome.REJECTED
                report.reasons[i] = f"the event is {len(line):,} bytes, over {self.where}.max_content_length, and cannot be cut to fit"
                continue
            single = self.send(events.slice(i, i + 1).with_line(fitted[0]))
            report.outcomes[i] = single.outcomes[0]
            if single.outcomes[0] is Outcome.DELIVERED:
                report.truncated[i] = oversize.reason("Elasticsearch", f"http.max_content_length ({self.where}.max_content_length)", len(line), fitted[1])
            elif 0 in single.reasons:
                report.reasons[i] = single.reasons[0]
        return report

    def _split(self, events: EventBatch, reason: str) -> DeliveryReport:
        n = len(events)
        if n == 1:
            return DeliveryReport.all(1, Outcome.REJECTED, f"{reason}: this single event is larger than the cluster accepts")
        half = n // 2
        first, second = self.send(events.slice(0, half)), self.send(events.slice(half, n))
        reasons = dict(first.reasons)
        reasons.update({half + i: r for i, r in second.reasons.items()})
        retry_after = max(first.retry_after or 0, second.retry_after or 0) or None
        return DeliveryReport(first.outcomes + second.outcomes, reasons, retry_after)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._client is not None:
            self._client.close()
            self._client = None


def _error(body: Any) -> Any:
    return body.get("error") if isinstance(body, dict) else body


def _error_type(body: Any) -> str:
    error = _error(body)
    return str(error.get("type", "")) if isinstance(error, dict) else ""


def _retry_after(headers: Any) -> float | None:
    return parse_retry_after(headers.get("retry-after")) if headers is not None else None
