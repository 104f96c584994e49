"""HelloJohn Cloud as a source, for customers without database access: the admin API.

Two ways to read a range (``source.api_read``):

* ``export`` (the default): ``GET /v1/audit-logs/export?format=json&from=…&to=…``, NDJSON
  streamed, followed up until the server shows it has nothing more: the last instant of each
  response settled through the list, then the rest of the range asked for until an answer brings
  nothing new (:mod:`audit_pipeline.sources.hellojohn_export`);
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

``count()`` reads the range the configured way and counts it.  The ``complete`` check asks
:meth:`HelloJohnApiSource.independent_count` instead: the range read through the *other*
endpoint (the list when days are exported from the stream, the stream when they are exported
from the list), so a server or proxy that shortens one endpoint's answers cannot make the check
compare a short read with itself.  ``count_method`` says which it was, for the check's metadata.

A crash or a failed read publishes nothing (the export writes only after the last batch),
and a re-run starts again from the range's beginning; the API is read only.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import httpx
import pyarrow as pa
from pydantic import SecretStr

from audit_pipeline.core.errors import ConfigError, SourceError
from audit_pipeline.core.event_filters import EventFilter
from audit_pipeline.core.isotime import epoch_micros as micros
from audit_pipeline.core.isotime import format_instant
from audit_pipeline.core.isotime import from_epoch_micros as from_micros
from audit_pipeline.sources.base import AuditSource, Position, TimeRange
from audit_pipeline.sources.hellojohn_events import RowBuffer
from audit_pipeline.sources.hellojohn_export import EXPORT_PATH, ExportReader
from audit_pipeline.sources.hellojohn_export import HEADERS as EXPORT_HEADERS
from audit_pipeline.sources.hellojohn_http import KEY_SETTING, URL_SETTING, HelloJohnHttp, NotFound, Transient
from audit_pipeline.sources.hellojohn_list import PAGE_SIZE, get_page, list_rows
from audit_pipeline.sources.hellojohn_order import OrderGuard

if TYPE_CHECKING:
    from audit_pipeline.config.settings import Settings

__all__ = ["DEFAULT_ROW_CAP", "HelloJohnApiSource"]

#: Rows wait as Python objects until they become a batch; this caps that.
MAX_BATCH_ROWS = 10_000
#: HelloJohn caps the dashboard's CSV download at 100,000 rows; the export endpoint is treated alike.
DEFAULT_ROW_CAP = 100_000
ApiRead = Literal["export", "list"]


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
    def _rows(
        self, time_range: TimeRange, after: Position | None, event_filter: EventFilter | None, limit: int | None = None, *, way: ApiRead | None = None
    ) -> Iterator[list[Any]]:
        """Rows in order, each once, within the range, after ``after`` and matching the filter; ``way`` overrides ``api_read``."""
        start, end = micros(time_range.start), micros(time_range.end)
        floor = (micros(after.created_at), after.id.encode("utf-8")) if after is not None else None
        if floor is not None:
            start = max(start, floor[0])
        if start >= end:
            return
        params: dict[str, Any] = {"from": format_instant(from_micros(start)), "to": format_instant(from_micros(end))}
        small = limit is not None and limit <= PAGE_SIZE
        if (way or self.api_read) == "list" or small:
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
        buffer = RowBuffer()
        for yielded, row in enumerate(self._rows(time_range, after, event_filter, limit), start=1):
            buffer.append(row)
            if len(buffer) >= self.batch_rows:
                yield buffer.take_batch()
            if limit is not None and yielded >= limit:
                break
        if len(buffer):
            yield buffer.take_batch()

    # -- counting ---------------------------------------------------------------------------------
    def _read_and_count(self, time_range: TimeRange, event_filter: EventFilter | None, way: ApiRead) -> tuple[int, str]:
        """Events of a whole read of the range through ``way``, and how that was done (requests included)."""
        requests_before = self.http.requests
        events = sum(1 for _ in self._rows(time_range, None, event_filter, way=way))
        requests = _plural(self.http.requests - requests_before, "request")
        if way == "export":
            return events, f"export stream of the range read and counted ({requests}, settling and confirming included)"
        return events, f"paged list of the range read and counted ({requests} of up to {self.page_size} events)"

    def count(self, time_range: TimeRange, event_filter: EventFilter | None = None) -> int:
        """The events of a new whole read of the range, the configured way."""
        events, self.count_method = self._read_and_count(time_range, event_filter, self.api_read)
        return events

    def independent_count(self, time_range: TimeRange, event_filter: EventFilter | None = None) -> int:
        """The events of the range read through the endpoint the export did not use, for the ``complete`` check.

        A count made by the read that produced the day would compare that read with itself: a response
        shortened cleanly would pass.  The list pages by cursor and the stream is followed up until the
        server shows its end, so each one's way of ending is checked by the other.  A server without the
        export endpoint (``api_read: list`` for that reason) is counted by a second, separate list read.
        """
        other: ApiRead = "list" if self.api_read == "export" else "export"
        try:
            events, how = self._read_and_count(time_range, event_filter, other)
        except NotFound:
            events, how = self._read_and_count(time_range, event_filter, "list")
            how = f"{how}: a second read, this server has no export endpoint"
        else:
            how = f"{how}: independent of the {self.api_read} read that published the day"
        self.count_method = how
        return events

    def close(self) -> None:
        self.http.close()
