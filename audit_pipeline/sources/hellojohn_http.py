"""Talking to HelloJohn's admin API: the URL and key, HTTP status handling, and the retry policy.

Both readers (the paged list and the export stream) share this: the same ``Authorization:
Bearer`` header, the same meaning of each status code, the same waits.

* 429 waits ``Retry-After`` (seconds or an HTTP date; else the error body's ``retry_after``), up
  to ``max_retry_after``; a longer wait is an error saying to run again later rather than a hang.
* 5xx, timeouts and dropped connections back off exponentially with jitter (tenacity).
* 401/403 are not retried; the message names the setting and ``HJ_SECRET_KEY``, never the key.
* ``http://`` is refused except to the loopback, so the key never crosses a network in clear.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import tenacity
from pydantic import SecretStr

from audit_pipeline.core.errors import ConfigError, SourceError
from audit_pipeline.core.retry_after import parse_retry_after

log = logging.getLogger(__name__)

KEY_SETTING = "source.secret_key (e.g. secret_key: ${HJ_SECRET_KEY})"
URL_SETTING = "source.base_url"


class NotFound(SourceError):
    """HTTP 404: the path does not exist on this server (a wrong ``source.base_url``, or no export endpoint)."""


class Transient(Exception):
    """A failure worth asking again for the same thing (429, 5xx, a timeout, a dropped connection)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (delta or HTTP date), else the error body's ``retry_after``."""
    from_header = parse_retry_after(response.headers.get("Retry-After"))
    if from_header is not None:
        return from_header
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


def reject_constant(name: str) -> Any:
    """``json.loads`` hook: NaN and Infinity are not JSON, and jsonb cannot hold them."""
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


class HelloJohnHttp:
    """One HTTP client for one HelloJohn server and key; counts the requests it sends."""

    def __init__(
        self,
        base_url: str,
        secret_key: SecretStr | str,
        *,
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
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.max_attempts = max_attempts
        self._max_backoff = max_backoff
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._transport = transport
        self._client: httpx.Client | None = None
        #: Requests sent, retries included (for tests, the benchmark and the count's metadata).
        self.requests = 0

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.base_url,
                timeout=self._timeout,
                transport=self._transport,
                headers={"User-Agent": "audit-pipeline"},
                follow_redirects=False,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- one request ------------------------------------------------------------------------------
    @contextmanager
    def stream(self, path: str, params: dict[str, Any], headers: dict[str, str]) -> Iterator[httpx.Response]:
        """A 200 response whose body is not read yet; any other answer raises :class:`Transient` or :class:`SourceError`."""
        self.requests += 1
        client = self._http()
        request = client.build_request("GET", path, params=params, headers={**headers, "Authorization": f"Bearer {self._secret.get_secret_value()}"})
        try:
            response = client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise Transient(f"{type(exc).__name__} talking to {self.base_url}") from None
        try:
            if response.status_code != 200:
                try:
                    response.read()
                except httpx.TransportError as exc:
                    raise Transient(f"{type(exc).__name__} reading an HTTP {response.status_code} answer from {self.base_url}") from None
                self._refuse(response, path)
            yield response
        finally:
            response.close()

    def _refuse(self, response: httpx.Response, path: str) -> None:
        status = response.status_code
        detail = _error_code(response)
        if status == 429 or status >= 500:
            retry_after = _retry_after(response) if status in (429, 503) else None
            if retry_after is not None and retry_after > self._max_retry_after:
                raise SourceError(
                    f"the HelloJohn API at {self.base_url} asks to wait {retry_after:.0f} s (HTTP {status}, Retry-After), "
                    f"longer than this source waits ({self._max_retry_after:.0f} s); run the export again later"
                )
            raise Transient(f"HTTP {status}" + (f" {detail}" if detail else ""), retry_after)
        if status in (401, 403):
            what = "was refused (HTTP 401: missing, invalid or revoked key)" if status == 401 else "lacks permission (HTTP 403) to read audit logs"
            raise SourceError(
                f"the HelloJohn secret key {what}{f' [{detail}]' if detail else ''}; check {KEY_SETTING} holds an admin secret key for {self.base_url}"
            )
        hint = f"; check {URL_SETTING} (the server's root URL, without /v1/audit-logs)" if status == 404 else ""
        if status == 404 and path.endswith("/export"):
            hint += ", or read through the paged list if this server has no export endpoint (source.api_read: list)"
        message = f"the HelloJohn API at {self.base_url} answered HTTP {status} to GET {path}{f' ({detail})' if detail else ''}{hint}"
        raise NotFound(message) if status == 404 else SourceError(message)

    def get_json(self, path: str, params: dict[str, Any]) -> Any:
        """One JSON body, numbers exact (``Decimal``); a body cut short is :class:`Transient`."""
        with self.stream(path, params, {"Accept": "application/json"}) as response:
            try:
                content = response.read()
            except httpx.TransportError as exc:
                raise Transient(f"{type(exc).__name__} reading from {self.base_url}") from None
        try:
            return json.loads(content, parse_float=Decimal, parse_constant=reject_constant)
        except ValueError as exc:
            raise SourceError(f"the HelloJohn API at {self.base_url} returned a body that is not JSON ({exc}); check {URL_SETTING}") from None

    # -- retry policy -------------------------------------------------------------------------------
    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Transient) and exc.retry_after is not None:
            return exc.retry_after
        backoff: float = tenacity.wait_random_exponential(multiplier=0.5, max=self._max_backoff)(state)
        return backoff

    def retrying(self, what: str) -> tenacity.Retrying:
        """The policy: :class:`Transient` failures retried ``max_attempts`` times, waiting as the server asks."""

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("HelloJohn API %s; asking for %s again (attempt %d)", getattr(exc, "reason", exc), what, state.attempt_number + 1)

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Transient),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    def pause(self, failure: Transient, attempt: int, what: str) -> None:
        """Wait before attempt ``attempt + 1`` after ``failure``, exactly as :meth:`retrying` would."""
        state = tenacity.RetryCallState(retry_object=self.retrying(what), fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        state.set_exception((Transient, failure, None))
        log.warning("HelloJohn API %s; asking for %s again (attempt %d)", failure.reason, what, attempt + 1)
        self._sleep(self._wait(state))
