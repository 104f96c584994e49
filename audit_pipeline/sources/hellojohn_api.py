"""HelloJohn Cloud as a source: the admin API's audit log list, paged, for customers without database access.

``GET {base_url}/v1/audit-logs?from=…&to=…&limit=200&cursor=…`` with ``Authorization: Bearer
{secret_key}`` returns ``data`` (events) and ``meta.cursor`` (absent or null on the last page),
as HelloJohn's nightly export script reads it.  Pages are converted as they arrive and
yielded in Arrow batches of at most ``batch_rows`` events, so memory stays bounded whatever
the range.

Exactness, whatever the server does:

* The cursor advances only after a page has been received, parsed and accepted; a page
  that fails (429, 5xx, a dropped connection) is asked for again with the same cursor, so
  a retry can neither skip nor repeat a page.  429 waits ``Retry-After``; 5xx and network
  errors back off exponentially with jitter (tenacity).
* The last ``(created_at, id)`` accepted is kept: an event at or before it that was among
  the recently accepted ones (a server repeating events across pages) is dropped; one that
  was not is an event delivered out of order, which cannot be placed without loss, so the
  read fails with a message saying so.  The API must list events oldest first.
* ``from``/``to`` are sent as the half-open range's ends, and events outside ``[from, to)``
  are dropped here too, whichever way the server reads ``to`` (the export page's examples
  suggest it is inclusive).

Filters: a single exact ``type`` or tenant is sent as the API's ``type=`` / ``tenant_id=``
to save pages; every filter is applied here as well with :meth:`EventFilter.matches`.

``count()`` pages through the whole range: it costs as many requests as reading it (one
per 200 events), so the completeness check doubles the API traffic of an export.

A crash or a failed read publishes nothing (the export writes only after the last page),
and a re-run starts again from the range's beginning; the API is read only.  Events that
HelloJohn records late, behind a page already read, are missed by that read, as with any
cursor; the nightly schedule runs after the day has closed, and a re-materialisation of the
day picks them up.
"""

from __future__ import annotations

import collections
import datetime as dt
import email.utils
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pyarrow as pa
import tenacity
from pydantic import SecretStr

from audit_pipeline.errors import ConfigError, SourceError
from audit_pipeline.isotime import format_instant
from audit_pipeline.sources.base import AuditSource, EventFilter, Position, TimeRange
from audit_pipeline.sources.hellojohn_events import RowBuffer, event_row, from_micros, micros, row_key

if TYPE_CHECKING:
    from audit_pipeline.settings import Settings

log = logging.getLogger(__name__)

LIST_PATH = "/v1/audit-logs"
#: The documented maximum page size of the list endpoint.
PAGE_SIZE = 200
#: Rows wait as Python objects until they become a batch; this caps that.
MAX_BATCH_ROWS = 10_000
KEY_SETTING = "source.secret_key (e.g. secret_key: ${HJ_SECRET_KEY})"
URL_SETTING = "source.base_url"


class _Transient(Exception):
    """A failure worth asking again for the same page."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (delta or HTTP date), else the error body's ``retry_after``."""
    header = response.headers.get("Retry-After")
    if header:
        header = header.strip()
        if header.isdigit():
            return float(header)
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get("retry_after") if isinstance(body, dict) else None
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def _error_code(response: httpx.Response) -> str:
    """``error.code`` and ``error.message`` of HelloJohn's error body, when there is one."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        parts = [str(error[k])[:200] for k in ("code", "message") if error.get(k)]
        return ": ".join(parts)
    if isinstance(error, str):
        message = body.get("message")
        return f"{error[:200]}: {str(message)[:200]}" if message else error[:200]
    return ""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def normalize_base_url(url: str) -> str:
    """``https://auth.example.com`` (also accepted with a trailing ``/`` or ``/v1``), validated."""
    value = (url or "").strip().rstrip("/")
    if value.endswith("/v1"):
        value = value[: -len("/v1")]
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{URL_SETTING} must be the HelloJohn server's URL, such as https://auth.yourdomain.com (got {url!r})")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"{URL_SETTING} must hold no credentials, query or fragment; the key goes in {KEY_SETTING}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(f"{URL_SETTING} uses plain http to {parts.hostname}; the secret key would cross the network unencrypted, use https://")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _exact_value(patterns: tuple[str, ...]) -> str | None:
    """The one literal value of a single wildcard-free include pattern, which the API can filter on."""
    if len(patterns) == 1 and not any(c in patterns[0] for c in "*?"):
        return patterns[0]
    return None


class _RecentKeys:
    """The last few keys seen (events, cursors), in bounded memory."""

    def __init__(self, size: int) -> None:
        self._order: collections.deque[Any] = collections.deque()
        self._members: set[Any] = set()
        self._size = size

    def add(self, key: Any) -> None:
        self._order.append(key)
        self._members.add(key)
        if len(self._order) > self._size:
            self._members.discard(self._order.popleft())

    def __contains__(self, key: object) -> bool:
        return key in self._members


class HelloJohnApiSource(AuditSource):
    """Reads ``GET /v1/audit-logs`` page by page; see the module docstring for the guarantees."""

    def __init__(
        self,
        base_url: str,
        secret_key: SecretStr | str,
        *,
        page_size: int = PAGE_SIZE,
        batch_rows: int = MAX_BATCH_ROWS,
        timeout: float = 30.0,
        max_attempts: int = 8,
        max_backoff: float = 30.0,
        max_retry_after: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        key = secret_key.get_secret_value() if isinstance(secret_key, SecretStr) else secret_key
        if not key or not key.strip():
            raise ConfigError(f"{KEY_SETTING} is empty; set it to a HelloJohn secret key (sk_live_...)")
        self._secret = SecretStr(key.strip())
        if not 1 <= page_size <= PAGE_SIZE:
            raise ConfigError(f"page_size must be between 1 and {PAGE_SIZE} (the list endpoint's maximum)")
        self.page_size = page_size
        self.batch_rows = max(1, min(batch_rows, MAX_BATCH_ROWS))
        self.description = f"HelloJohn API {self.base_url}"
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._max_attempts = max_attempts
        self._max_backoff = max_backoff
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._transport = transport
        self._client: httpx.Client | None = None
        #: Requests sent, retries included (for tests and the benchmark).
        self.requests = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> HelloJohnApiSource:
        source = settings.source
        if not source.base_url:
            raise ConfigError(f"{URL_SETTING} is not set; with source.type hellojohn_api give the server's URL, e.g. https://auth.yourdomain.com")
        if source.secret_key is None:
            raise ConfigError(f"{KEY_SETTING} is not set; put the key in the environment variable HJ_SECRET_KEY and refer to it from the YAML")
        return cls(source.base_url, source.secret_key, batch_rows=source.batch_rows)

    # -- HTTP ---------------------------------------------------------------------------------
    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.base_url,
                timeout=self._timeout,
                transport=self._transport,
                headers={"Accept": "application/json", "User-Agent": "audit-pipeline"},
                follow_redirects=False,
            )
        return self._client

    def _get_once(self, params: dict[str, Any]) -> dict[str, Any]:
        self.requests += 1
        try:
            response = self._http().get(LIST_PATH, params=params, headers={"Authorization": f"Bearer {self._secret.get_secret_value()}"})
        except httpx.TransportError as exc:
            raise _Transient(f"{type(exc).__name__} talking to {self.base_url}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after = _retry_after(response) if status in (429, 503) else None
            if retry_after is not None and retry_after > self._max_retry_after:
                raise SourceError(
                    f"the HelloJohn API at {self.base_url} asks to wait {retry_after:.0f} s (HTTP {status}, Retry-After), "
                    f"longer than this source waits ({self._max_retry_after:.0f} s); run the export again later"
                )
            raise _Transient(f"HTTP {status}" + (f" {_error_code(response)}" if _error_code(response) else ""), retry_after)
        if status in (401, 403):
            what = "was refused (HTTP 401: missing, invalid or revoked key)" if status == 401 else "lacks permission (HTTP 403) to list audit logs"
            detail = _error_code(response)
            raise SourceError(
                f"the HelloJohn secret key {what}{f' [{detail}]' if detail else ''}; check {KEY_SETTING} holds an admin secret key for {self.base_url}"
            )
        if status != 200:
            detail = _error_code(response)
            hint = f"; check {URL_SETTING} (the server's root URL, without /v1/audit-logs)" if status == 404 else ""
            raise SourceError(f"the HelloJohn API at {self.base_url} answered HTTP {status} to GET {LIST_PATH}{f' ({detail})' if detail else ''}{hint}")
        try:
            body = json.loads(response.content, parse_float=Decimal, parse_constant=_reject_constant)
        except ValueError as exc:
            raise SourceError(f"the HelloJohn API at {self.base_url} returned a body that is not JSON ({exc}); check {URL_SETTING}") from None
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise SourceError(f"the HelloJohn API at {self.base_url} returned no 'data' list from GET {LIST_PATH}; check {URL_SETTING}")
        meta = body.get("meta")
        if meta is not None and not isinstance(meta, dict):
            raise SourceError(f"the HelloJohn API at {self.base_url} returned 'meta' as {type(meta).__name__}, expected an object")
        return body

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return exc.retry_after
        backoff: float = tenacity.wait_random_exponential(multiplier=0.5, max=self._max_backoff)(state)
        return backoff

    def _get_page(self, params: dict[str, Any]) -> dict[str, Any]:
        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("HelloJohn API %s; asking for the same page again (attempt %d)", getattr(exc, "reason", exc), state.attempt_number + 1)

        try:
            for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception_type(_Transient),
                stop=tenacity.stop_after_attempt(self._max_attempts),
                wait=self._wait,
                sleep=self._sleep,
                before_sleep=before_sleep,
                reraise=True,
            ):
                with attempt:
                    return self._get_once(params)
        except _Transient as exc:
            raise SourceError(
                f"the HelloJohn API at {self.base_url} kept failing ({exc.reason}) after {self._max_attempts} attempts; nothing past the last good page was read"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- paging -------------------------------------------------------------------------------
    def _rows(self, time_range: TimeRange, after: Position | None, event_filter: EventFilter | None) -> Iterator[list[Any]]:
        """Rows in order, each once, within the range, after ``after`` and matching the filter."""
        start, end = micros(time_range.start), micros(time_range.end)
        floor: tuple[int, bytes] | None = None
        if after is not None:
            floor = (micros(after.created_at), after.id.encode("utf-8"))
            start = max(start, floor[0])
        if start >= end:
            return
        params: dict[str, Any] = {"from": format_instant(from_micros(start)), "to": format_instant(from_micros(end)), "limit": self.page_size}
        if event_filter is not None:
            exact_type = _exact_value(event_filter.include_types)
            if exact_type is not None:
                params["type"] = exact_type
            exact_tenant = _exact_value(event_filter.include_tenants)
            if exact_tenant:
                params["tenant_id"] = exact_tenant
        recent = _RecentKeys(max(4 * self.page_size, 1_000))
        last: tuple[int, bytes] | None = None
        cursor: str | None = None
        seen_cursors = _RecentKeys(1_000)  # a server handing back an earlier cursor would loop forever
        while True:
            body = self._get_page({**params, "cursor": cursor} if cursor else params)
            for index, event in enumerate(body["data"]):
                row = event_row(event, index)
                key = row_key(row)
                if key[0] >= end:
                    return  # oldest first: nothing later can be in range
                if key[0] < start or (floor is not None and key <= floor):
                    continue
                if last is not None and key <= last:
                    if key in recent:
                        continue  # the server repeated an event already yielded
                    raise SourceError(
                        f"the HelloJohn API at {self.base_url} listed event {row[0]!r} ({format_instant(from_micros(key[0]))}) after "
                        f"{last[1].decode()!r} ({format_instant(from_micros(last[0]))}): events must come oldest first, by (created_at, id); "
                        "an event out of order cannot be exported without risking loss, so the read stopped"
                    )
                last = key
                recent.add(key)
                if event_filter is None or event_filter.matches(row[1], row[7], row[8]):
                    yield row
            meta = body.get("meta") or {}
            next_cursor = meta.get("cursor")
            if next_cursor in (None, ""):
                return
            if not isinstance(next_cursor, str):
                raise SourceError(f"the HelloJohn API at {self.base_url} returned meta.cursor {next_cursor!r}, expected a string or null")
            if next_cursor in seen_cursors:
                raise SourceError(f"the HelloJohn API at {self.base_url} returned a cursor it had already returned; paging would never end")
            seen_cursors.add(next_cursor)
            cursor = next_cursor

    def check(self) -> None:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self._get_page({"from": format_instant(now - dt.timedelta(minutes=1)), "to": format_instant(now), "limit": 1})

    def iter_batches(
        self,
        time_range: TimeRange,
        *,
        after: Position | None = None,
        limit: int | None = None,
        event_filter: EventFilter | None = None,
    ) -> Iterator[pa.RecordBatch]:
        if limit is not None and limit <= 0:
            return
        buffer = RowBuffer()
        for yielded, row in enumerate(self._rows(time_range, after, event_filter), start=1):
            buffer.append(row)
            if len(buffer) >= self.batch_rows:
                yield buffer.take_batch()
            if limit is not None and yielded >= limit:
                break
        if len(buffer):
            yield buffer.take_batch()

    def count(self, time_range: TimeRange, event_filter: EventFilter | None = None) -> int:
        """Pages through the range (as many requests as reading it): the API's ``meta.total`` is not relied on."""
        return sum(1 for _ in self._rows(time_range, None, event_filter))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
