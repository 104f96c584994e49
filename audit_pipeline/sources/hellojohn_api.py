"""HelloJohn Cloud as a source, for customers without database access: the admin API.

Two ways to read a range (``source.api_read``):

* ``export`` (the default): ``GET /v1/audit-logs/export?format=json&from=…&to=…``, NDJSON
  streamed in one request per range, resumed when a response may be truncated
  (:mod:`audit_pipeline.sources.hellojohn_export`);
* ``list``: ``GET /v1/audit-logs?from=…&to=…&limit=200&cursor=…``, one request per 200 events,
  as HelloJohn's nightly script reads it (:mod:`audit_pipeline.sources.hellojohn_list`).

A read of at most 200 events (``limit``, as the forwarding engine's probes ask) goes through the
list with that page size whichever is configured: one small request instead of a stream.

Either way events are converted exactly (:mod:`audit_pipeline.sources.hellojohn_events`),
checked for order and repeats (:mod:`audit_pipeline.sources.hellojohn_order`), filtered with
:meth:`EventFilter.matches` (a single exact type or tenant is also sent to the list as ``type=`` /
``tenant_id=`` to save pages) and yielded in Arrow batches of at most ``batch_rows`` events.
``from``/``to`` are the half-open range's ends; events outside ``[from, to)`` are dropped here,
whichever way the server reads ``to``.

``count()`` of a range this process has just read whole (an export followed by its check)
is the number of events that read yielded: no second pass.  Otherwise it reads the range
the configured way and counts; ``count_method`` says which it was, for the check's metadata.

A crash or a failed read publishes nothing (the export writes only after the last batch),
and a re-run starts again from the range's beginning; the API is read only.
"""

from __future__ import annotations

import collections
import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import httpx
import pyarrow as pa
from pydantic import SecretStr

from audit_pipeline.errors import ConfigError, SourceError
from audit_pipeline.isotime import format_instant
from audit_pipeline.sources.base import AuditSource, EventFilter, Position, TimeRange
from audit_pipeline.sources.hellojohn_events import RowBuffer, from_micros, micros
from audit_pipeline.sources.hellojohn_export import EXPORT_PATH, ExportReader
from audit_pipeline.sources.hellojohn_export import HEADERS as EXPORT_HEADERS
from audit_pipeline.sources.hellojohn_http import KEY_SETTING, URL_SETTING, HelloJohnHttp, Transient, normalize_base_url
from audit_pipeline.sources.hellojohn_list import PAGE_SIZE, get_page, list_rows
from audit_pipeline.sources.hellojohn_order import OrderGuard

if TYPE_CHECKING:
    from audit_pipeline.settings import Settings

__all__ = ["DEFAULT_ROW_CAP", "HelloJohnApiSource", "normalize_base_url"]

#: Rows wait as Python objects until they become a batch; this caps that.
MAX_BATCH_ROWS = 10_000
#: HelloJohn caps the dashboard's CSV download at 100,000 rows; the export endpoint is treated alike.
DEFAULT_ROW_CAP = 100_000
#: How long the count of a range read whole stands in for counting it again.
STREAMED_COUNT_SECONDS = 15 * 60

ApiRead = Literal["export", "list"]

#: (server, start, end, filter) -> (events, requests, when): ranges this process read whole, newest last.
_streamed: collections.OrderedDict[tuple[Any, ...], tuple[int, int, float]] = collections.OrderedDict()


def forget_streamed_counts() -> None:
    """Forget every remembered read (a server replaced by another at the same URL, as in tests)."""
    _streamed.clear()


def _exact_value(patterns: tuple[str, ...]) -> str | None:
    """The one literal value of a single wildcard-free include pattern, which the API can filter on."""
    if len(patterns) == 1 and not any(c in patterns[0] for c in "*?"):
        return patterns[0]
    return None


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


class HelloJohnApiSource(AuditSource):
    """Reads audit events from HelloJohn's admin API; see the module docstring for the guarantees."""

    def __init__(
        self,
        base_url: str,
        secret_key: SecretStr | str,
        *,
        api_read: ApiRead = "export",
        export_row_cap: int = DEFAULT_ROW_CAP,
        page_size: int = PAGE_SIZE,
        batch_rows: int = MAX_BATCH_ROWS,
        timeout: float = 30.0,
        max_attempts: int = 8,
        max_backoff: float = 30.0,
        max_retry_after: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if api_read not in ("export", "list"):
            raise ConfigError(f"source.api_read must be export or list (got {api_read!r})")
        if not 1 <= page_size <= PAGE_SIZE:
            raise ConfigError(f"page_size must be between 1 and {PAGE_SIZE} (the list endpoint's maximum)")
        if export_row_cap < 0:
            raise ConfigError("source.export_row_cap must be 0 (no cap) or the number of events the export endpoint returns at most")
        self.http = HelloJohnHttp(
            base_url,
            secret_key,
            timeout=timeout,
            max_attempts=max_attempts,
            max_backoff=max_backoff,
            max_retry_after=max_retry_after,
            sleep=sleep,
            transport=transport,
        )
        self.base_url = self.http.base_url
        self.api_read: ApiRead = api_read
        self.page_size = page_size
        self.batch_rows = max(1, min(batch_rows, MAX_BATCH_ROWS))
        self.description = f"HelloJohn API {self.base_url}"
        self._export = ExportReader(self.http, row_cap=export_row_cap)
        self.count_method = f"{'export stream' if api_read == 'export' else 'paged list'} of the range, counted as read"

    @classmethod
    def from_settings(cls, settings: Settings) -> HelloJohnApiSource:
        source = settings.source
        if source.type != "hellojohn_api":
            raise ConfigError(f"source.type is {source.type}, not hellojohn_api")
        if not source.base_url:
            raise ConfigError(f"{URL_SETTING} is not set; with source.type hellojohn_api give the server's URL, e.g. https://auth.yourdomain.com")
        if source.secret_key is None:
            raise ConfigError(f"{KEY_SETTING} is not set; put the key in the environment variable HJ_SECRET_KEY and refer to it from the YAML")
        return cls(source.base_url, source.secret_key, api_read=source.api_read, export_row_cap=source.export_row_cap, batch_rows=source.batch_rows)

    @property
    def requests(self) -> int:
        """Requests sent so far, retries included."""
        return self.http.requests

    # -- reading ----------------------------------------------------------------------------------
    def _rows(self, time_range: TimeRange, after: Position | None, event_filter: EventFilter | None, limit: int | None = None) -> Iterator[list[Any]]:
        """Rows in order, each once, within the range, after ``after`` and matching the filter."""
        start, end = micros(time_range.start), micros(time_range.end)
        floor = (micros(after.created_at), after.id.encode("utf-8")) if after is not None else None
        if floor is not None:
            start = max(start, floor[0])
        if start >= end:
            return
        params: dict[str, Any] = {"from": format_instant(from_micros(start)), "to": format_instant(from_micros(end))}
        small = limit is not None and limit <= PAGE_SIZE
        if self.api_read == "list" or small:
            origin = f"the HelloJohn API at {self.base_url}"
            if event_filter is not None:
                exact_type, exact_tenant = _exact_value(event_filter.include_types), _exact_value(event_filter.include_tenants)
                params.update({"type": exact_type} if exact_type is not None else {})
                params.update({"tenant_id": exact_tenant} if exact_tenant else {})
            guard = OrderGuard(start, end, floor, origin=origin, recent=max(4 * self.page_size, 1_000))
            rows = list_rows(self.http, params, guard, min(self.page_size, limit) if small and limit else self.page_size)
        else:
            rows = self._export.rows(params, OrderGuard(start, end, floor, origin=self._export.origin))
        for row in rows:
            if event_filter is None or event_filter.matches(row[1], row[7], row[8]):
                yield row

    def check(self) -> None:
        """One request to the endpoint reads will use, over the last minute (refusals and a wrong URL show here)."""
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        params = {"from": format_instant(now - dt.timedelta(minutes=1)), "to": format_instant(now)}
        if self.api_read == "list":
            get_page(self.http, {**params, "limit": 1})
            return
        try:
            for attempt in self.http.retrying("the export endpoint"):
                with attempt, self.http.stream(EXPORT_PATH, {**params, "format": "json"}, EXPORT_HEADERS):
                    pass  # the answer's status is the check; the events of that minute are not needed
        except Transient as exc:
            raise SourceError(f"the HelloJohn API at {self.base_url} kept failing ({exc.reason}) after {self.http.max_attempts} attempts") from None

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
        requests_before = self.http.requests
        buffer = RowBuffer()
        yielded = 0
        for row in self._rows(time_range, after, event_filter, limit):
            buffer.append(row)
            yielded += 1
            if len(buffer) >= self.batch_rows:
                yield buffer.take_batch()
            if limit is not None and yielded >= limit:
                break
        if len(buffer):
            yield buffer.take_batch()
        if after is None and limit is None:
            self._remember(time_range, event_filter, yielded, self.http.requests - requests_before)

    # -- counting ---------------------------------------------------------------------------------
    def _key(self, time_range: TimeRange, event_filter: EventFilter | None) -> tuple[Any, ...]:
        return (self.base_url, micros(time_range.start), micros(time_range.end), event_filter if event_filter and not event_filter.is_empty else None)

    def _remember(self, time_range: TimeRange, event_filter: EventFilter | None, events: int, requests: int) -> None:
        key = self._key(time_range, event_filter)
        _streamed.pop(key, None)
        _streamed[key] = (events, requests, time.monotonic())
        while len(_streamed) > 64:
            _streamed.popitem(last=False)

    def streamed_count(self, time_range: TimeRange, event_filter: EventFilter | None = None) -> int | None:
        """Events a whole read of exactly this range yielded in this process within the last 15 minutes, else None."""
        found = _streamed.get(self._key(time_range, event_filter))
        if found is None or time.monotonic() - found[2] > STREAMED_COUNT_SECONDS:
            return None
        return found[0]

    def count(self, time_range: TimeRange, event_filter: EventFilter | None = None) -> int:
        """The events of a whole read of the range: the one just made, else a new read counted as it goes."""
        known = self.streamed_count(time_range, event_filter)
        if known is not None:
            _, requests, _ = _streamed[self._key(time_range, event_filter)]
            way = "export stream" if self.api_read == "export" else "paged list"
            self.count_method = f"events yielded by this process's {way} read of the range ({_plural(requests, 'request')}); no further request"
            return known
        requests_before = self.http.requests
        events = sum(1 for _ in self._rows(time_range, None, event_filter))
        requests = self.http.requests - requests_before
        if self.api_read == "export":
            self.count_method = f"export stream of the range read and counted ({_plural(requests, 'request')})"
        else:
            self.count_method = f"paged list of the range read and counted ({_plural(requests, 'request')} of up to {self.page_size} events)"
        return events

    def close(self) -> None:
        self.http.close()
