"""HTTP details the Datadog, Splunk and webhook sinks share: one client setup, reading
``Retry-After``, naming a transport failure without leaking a URL or a secret, and marking
the outcome of a request's events.

Kept here so each sink module stays about its vendor's protocol only.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterable

import httpx
import orjson

from audit_pipeline.core import redaction
from audit_pipeline.core.redaction import redact, register_secrets
from audit_pipeline.core.retry_after import parse_retry_after
from audit_pipeline.sinks.base import DeliveryReport, Outcome

#: Sent on every request so receivers can tell our traffic apart in their logs.
USER_AGENT = "audit-pipeline"


def client(timeout_seconds: float, verify: bool | str | ssl.SSLContext = True) -> httpx.Client:
    """A keep-alive client that never follows redirects (a 3xx is an answer, not a detour)."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout_seconds),
        follow_redirects=False,
        verify=verify,
        headers={"User-Agent": USER_AGENT},
    )


def retry_after(response: httpx.Response, now: dt.datetime | None = None) -> float | None:
    """Seconds the server asked us to wait: ``Retry-After`` as delta-seconds or an HTTP-date (RFC 9110)."""
    return parse_retry_after(response.headers.get("Retry-After"), now)


def transport_reason(exc: BaseException, timeout_seconds: float, host: str = "", setting: str = "") -> str:
    """Why a request got no answer: refused, DNS, TLS, timeout or a dropped connection, naming the host
    (never the path, query or any header) and the setting to check."""
    where = f" {host}" if host else ""
    check = f"; check {setting}" if setting else ""
    chain = _chain_text(exc)
    if isinstance(exc, httpx.TimeoutException) or "timed out" in chain or "timeout" in type(exc).__name__.lower():
        return f"no answer within {timeout_seconds:g} s from{where or ' the server'} ({type(exc).__name__}){check} (and the sink's timeout)"
    if isinstance(exc, ssl.SSLError) or any(k in chain for k in ("certificate", "ssl", "tls", "wrong version number")):
        return (
            f"TLS handshake with{where or ' the server'} failed ({_detail(chain, ('certificate verify failed', 'wrong version number', 'ssl', 'tls'))}){check}"
        )
    if any(
        k in chain
        for k in ("name or service not known", "nodename nor servname", "temporary failure in name resolution", "getaddrinfo", "no address associated")
    ):
        return f"the host name{where} could not be resolved (DNS){check}"
    if "connection refused" in chain:
        return f"connection refused by{where or ' the server'} (nothing listens there){check}"
    if any(k in chain for k in ("network is unreachable", "no route to host")):
        return f"no network route to{where or ' the server'}{check}"
    if isinstance(exc, httpx.RemoteProtocolError) or any(k in chain for k in ("disconnected", "connection reset", "closed connection", "without sending")):
        return f"{(where.strip() or 'the server')} closed the connection without an answer ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect to{where or ' the server'} ({type(exc).__name__}){check}"
    return f"connection to{where or ' the server'} failed ({type(exc).__name__}){check}"


def host_of(url: str) -> str:
    """``host:port`` of a URL, for messages: no user, password, path or query."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "the server"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.host}:{port}"


def _chain_text(exc: BaseException) -> str:
    """The messages of an exception and its causes, lower-cased, for classification only (never shown whole)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " | ".join(parts).lower()


def _detail(chain: str, keys: tuple[str, ...]) -> str:
    for key in keys:
        if key in chain:
            return key
    return "handshake error"


def excerpt(response: httpx.Response, secrets: Iterable[str] = (), limit: int = 200) -> str:
    """The start of a response body for an error message: every secret masked first, then cut
    (cutting first could leave part of a secret that no longer matches the mask)."""
    register_secrets(secrets)
    return redaction.excerpt(response.text, limit)


def json_string(value: str) -> bytes:
    """A JSON string literal, UTF-8, non-ASCII kept (as the NDJSON export writes text)."""
    return orjson.dumps(value)


def mark(report: DeliveryReport, indices: Iterable[int], outcome: Outcome, reason: str | None = None) -> None:
    """Set the outcome of a request's events; a delivered event carries no reason."""
    if outcome is Outcome.RETRY and reason and report.failure is None:
        report.failure = reason
    for i in indices:
        report.outcomes[i] = outcome
        if reason:
            report.reasons[i] = redact(reason)
        else:
            report.reasons.pop(i, None)


def explain_unsent(report: DeliveryReport) -> DeliveryReport:
    """Give every still-pending event a reason: a batch stops at its first request to retry,
    so later requests are not sent ahead of it (their events would arrive out of order)."""
    for i, outcome in enumerate(report.outcomes):
        if outcome is Outcome.RETRY:
            report.reasons.setdefault(i, "not sent yet: an earlier request of this batch must be retried first")
    return report
