"""HTTP details the Datadog, Splunk and webhook sinks share: one client setup, reading
``Retry-After``, naming a transport failure without leaking a URL or a secret, and marking
the outcome of a request's events.

Kept here so each sink module stays about its vendor's protocol only.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Iterable

import httpx
import orjson

from audit_pipeline.sinks.base import DeliveryReport, Outcome

#: Sent on every request so receivers can tell our traffic apart in their logs.
USER_AGENT = "audit-pipeline"


def client(timeout_seconds: float, verify: bool | str = True) -> httpx.Client:
    """A keep-alive client that never follows redirects (a 3xx is an answer, not a detour)."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout_seconds),
        follow_redirects=False,
        verify=verify,
        headers={"User-Agent": USER_AGENT},
    )


def retry_after(response: httpx.Response, now: dt.datetime | None = None) -> float | None:
    """Seconds the server asked us to wait: ``Retry-After`` as delta-seconds or an HTTP-date (RFC 9110)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


def transport_reason(exc: httpx.HTTPError, timeout_seconds: float) -> str:
    """Why a request got no answer, in words that contain neither the URL nor any header."""
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout_seconds:g} s ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect (ConnectError)"
    return f"connection failed ({type(exc).__name__})"


def excerpt(response: httpx.Response, secrets: Iterable[str] = (), limit: int = 200) -> str:
    """The start of a response body for an error message, with any secret masked."""
    text = response.text[:limit].strip()
    return redact(text, secrets)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def json_string(value: str) -> bytes:
    """A JSON string literal, UTF-8, non-ASCII kept (as the NDJSON export writes text)."""
    return orjson.dumps(value)


def mark(report: DeliveryReport, indices: Iterable[int], outcome: Outcome, reason: str | None = None) -> None:
    """Set the outcome of a request's events; a delivered event carries no reason."""
    for i in indices:
        report.outcomes[i] = outcome
        if reason:
            report.reasons[i] = reason
        else:
            report.reasons.pop(i, None)


def explain_unsent(report: DeliveryReport) -> DeliveryReport:
    """Give every still-pending event a reason: a batch stops at its first request to retry,
    so later requests are not sent ahead of it (their events would arrive out of order)."""
    for i, outcome in enumerate(report.outcomes):
        if outcome is Outcome.RETRY:
            report.reasons.setdefault(i, "not sent yet: an earlier request of this batch must be retried first")
    return report
