"""Each sink's health endpoint, asked with the configured credentials, without sending an event.

Used by ``audit-pipeline config check --connect`` so that a wrong URL, key or token shows before
the first forward instead of as the first pass's failure:

* Elasticsearch: ``GET /`` (cluster info) on every configured node, with the API key or basic credentials;
* Splunk HEC: ``GET /services/collector/health`` (code 17 "HEC is healthy"), then the token checked by
  an event request with an empty body, which HEC answers ``400 code 5 "No data"`` once the token is
  accepted and 401/403 otherwise (nothing is indexed);
* Datadog: ``GET /api/v1/validate`` with ``DD-API-KEY`` on the site's API host (``api.<site>``, or the
  host of ``url`` when set), answered ``{"valid": true}`` or 403;
* webhooks: a ``HEAD`` request: any HTTP answer means the receiver is reachable (no event is posted,
  since a signed request would be a delivery).

Each probe returns a :class:`Probe`: whether it passed, what was seen, and the setting to fix.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from audit_pipeline.config.sections.datadog import DatadogSettings
from audit_pipeline.config.sections.elasticsearch import ElasticsearchSettings
from audit_pipeline.config.sections.splunk import SplunkSettings
from audit_pipeline.config.sections.webhook import WebhookSettings
from audit_pipeline.core.redaction import redact
from audit_pipeline.sinks import http_client


@dataclass(frozen=True)
class Probe:
    """One answer from a sink's health endpoint: passed or not, what was seen, the setting to fix."""

    ok: bool
    detail: str
    setting: str = ""


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def elasticsearch(config: ElasticsearchSettings, where: str = "sinks.elasticsearch", timeout: float = 10.0) -> list[Probe]:
    """``GET /`` on every node; 401/403 names the credentials, no answer names the URL."""
    from audit_pipeline.sinks.elasticsearch_http import ApiError, ElasticsearchHttp, NotElasticsearch

    urls = [config.url] if isinstance(config.url, str) else list(config.url)
    credentials = f"{where}.api_key" if config.api_key is not None else f"{where}.username/password"
    probes: list[Probe] = []
    for url in urls:
        node = config.model_copy(update={"url": url, "request_timeout": min(config.request_timeout, timeout)})
        host = http_client.host_of(url)
        http = ElasticsearchHttp(node)
        try:
            info = http.json("GET", "/")
            version = (info.get("version") or {}).get("number", "?") if isinstance(info, dict) else "?"
            name = info.get("cluster_name", "?") if isinstance(info, dict) else "?"
            probes.append(Probe(True, f"{host}: cluster {name!r}, Elasticsearch {version}"))
        except ApiError as exc:
            if exc.status in (401, 403):
                probes.append(Probe(False, f"{host} answered {exc.status}: the credentials were refused", credentials))
            else:
                probes.append(Probe(False, f"{host} answered {exc} to GET /", f"{where}.url"))
        except NotElasticsearch:
            probes.append(Probe(False, f"{host} answered without X-Elastic-Product: Elasticsearch; it is not an Elasticsearch node", f"{where}.url"))
        except httpx.HTTPError as exc:
            probes.append(Probe(False, http_client.transport_reason(exc, timeout, host), f"{where}.url"))
        finally:
            http.close()
    return probes


def splunk(config: SplunkSettings, where: str = "sinks.splunk", timeout: float = 10.0) -> list[Probe]:
    """HEC's health endpoint, then the token (an empty event request: code 5 means the token was accepted)."""
    verify: bool | str = config.tls_ca_file or config.tls_verify
    host = http_client.host_of(config.hec_url)
    token = config.hec_token.get_secret_value()
    with http_client.client(min(config.timeout_seconds, timeout), verify=verify) as client:
        try:
            health = client.get(f"{config.hec_url}/services/collector/health")
        except httpx.HTTPError as exc:
            return [Probe(False, http_client.transport_reason(exc, timeout, host), f"{where}.hec_url")]
        body = _json(health)
        code = body.get("code") if isinstance(body, dict) else None
        text = body.get("text") if isinstance(body, dict) else http_client.excerpt(health, [token], 80)
        if health.status_code != 200:
            return [Probe(False, f"{host} HEC health answered {health.status_code} ({text})", f"{where}.hec_url")]
        probes = [Probe(True, f"{host}: HEC health {text!r} (code {code})")]
        headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
        if config.use_ack:
            headers["X-Splunk-Request-Channel"] = str(uuid.uuid4())
        try:
            answer = client.post(f"{config.hec_url}/services/collector/event", content=b"", headers=headers)
        except httpx.HTTPError as exc:
            return [*probes, Probe(False, http_client.transport_reason(exc, timeout, host), f"{where}.hec_url")]
        body = _json(answer)
        code = body.get("code") if isinstance(body, dict) else None
        text = body.get("text") if isinstance(body, dict) else http_client.excerpt(answer, [token], 80)
        if answer.status_code in (401, 403):
            probes.append(Probe(False, f"{host} refused the HEC token ({answer.status_code}, {text})", f"{where}.hec_token"))
        elif answer.status_code == 400 and code == 5:
            probes.append(Probe(True, f"{host}: HEC token accepted"))
        elif answer.status_code == 400 and code in (10, 11):
            probes.append(Probe(False, f"{host} asks for a data channel ({text}): indexer acknowledgement is on for this token", f"{where}.use_ack"))
        else:
            probes.append(Probe(False, f"{host} answered {answer.status_code} ({text}) to an empty event request", f"{where}.hec_url"))
        return probes


def datadog_validate_url(config: DatadogSettings) -> str:
    """Where the API key is validated: ``https://api.<site>/api/v1/validate``, or the host of ``url``."""
    if config.url:
        parsed = httpx.URL(config.url)
        return str(parsed.copy_with(path="/api/v1/validate", query=None, fragment=None))
    return f"https://api.{config.site}/api/v1/validate"


def datadog(config: DatadogSettings, where: str = "sinks.datadog", timeout: float = 10.0) -> list[Probe]:
    """``GET /api/v1/validate`` with the API key: 200 ``{"valid": true}``, 403 when the key is wrong."""
    url = datadog_validate_url(config)
    host = http_client.host_of(url)
    key = config.api_key.get_secret_value()
    with http_client.client(min(config.timeout_seconds, timeout)) as client:
        try:
            answer = client.get(url, headers={"DD-API-KEY": key, "Accept": "application/json"})
        except httpx.HTTPError as exc:
            return [Probe(False, http_client.transport_reason(exc, timeout, host), f"{where}.site" if not config.url else f"{where}.url")]
    body = _json(answer)
    if answer.status_code == 200 and isinstance(body, dict) and body.get("valid") is True:
        return [Probe(True, f"{host}: API key valid")]
    if answer.status_code in (401, 403) or (answer.status_code == 200 and isinstance(body, dict)):
        return [Probe(False, f"{host} says the API key is not valid ({answer.status_code}) for site {config.site}", f"{where}.api_key (and {where}.site)")]
    return [Probe(False, f"{host} answered {answer.status_code} to GET /api/v1/validate: {http_client.excerpt(answer, [key], 80)}", f"{where}.url")]


def webhook(config: WebhookSettings, where: str = "sinks.webhooks[0]", timeout: float = 10.0) -> list[Probe]:
    """A ``HEAD`` request to the receiver: any HTTP status shows it is reachable (nothing is delivered)."""
    host = http_client.host_of(config.url)
    setting = f"{where}.url (name: {config.name})"
    with http_client.client(min(config.timeout_seconds, timeout)) as client:
        try:
            answer = client.head(config.url)
        except httpx.HTTPError as exc:
            return [Probe(False, http_client.transport_reason(exc, timeout, host), setting)]
    if answer.status_code == 410:
        return [Probe(False, f"{host} answered 410 Gone: the receiver asks us to stop", setting)]
    return [Probe(True, f"{host} reachable (HEAD answered {answer.status_code}; nothing was posted)")]


def probe(kind: str, section: Any, where: str, timeout: float = 10.0) -> list[Probe]:
    """The probes for one ``sinks:`` entry (``kind`` is its key: elasticsearch, splunk, datadog, webhooks)."""
    asks: dict[str, Callable[[Any, str, float], list[Probe]]] = {"elasticsearch": elasticsearch, "splunk": splunk, "datadog": datadog, "webhooks": webhook}
    probes = asks[kind](section, where, timeout)
    return [Probe(p.ok, redact(p.detail), p.setting) for p in probes]
