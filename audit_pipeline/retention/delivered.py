"""Has every enabled sink got every event of a day?  Asked with counts, never inferred from a position.

A position says how far a sink got, not that every event behind it arrived: a row that
commits behind the position is never sent.  So before a day's rows go:

- Elasticsearch is asked: ``_count`` of the day's exported ids in the index the sink writes
  the day to (an ids query, in batches), which must equal the exported events.  Days whose
  index is past ``retention.elasticsearch`` (deleted on purpose) fall back to the count below.
- Every other sink (Datadog, Splunk, webhooks) cannot be asked, so the forwarding engine
  counts the events it delivered per sink and UTC day, committed with the position
  (:meth:`PositionStore.delivered_count`); that count must equal the day's rows.

A day whose counts disagree is kept, and the reason names the sink and both counts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from audit_pipeline.config.sections.elasticsearch import render_index
from audit_pipeline.config.settings import Settings
from audit_pipeline.core.errors import AuditPipelineError, first_line
from audit_pipeline.forwarding.delivered_counts import CountingStart
from audit_pipeline.forwarding.positions import PositionStore
from audit_pipeline.sinks.elasticsearch import ElasticsearchSink


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


@dataclass(frozen=True)
class CountedSink:
    name: str
    #: The sink's client when it can be asked (Elasticsearch), else None.
    elasticsearch: ElasticsearchSink | None
    counting: CountingStart | None
    #: The sink has a position (it started) but per-day counting never began (nothing delivered since).
    started: bool
    #: Where it is configured (``sinks.webhooks[0]``), to name the setting that disables it.
    where: str = "sinks"


class DeliveryCounts:
    """Per enabled sink, how many of a day's events it holds; opened once per retention plan."""

    def __init__(self, settings: Settings, index_cutoff: dt.date | None) -> None:
        from audit_pipeline.forwarding.configured import configured_sinks

        self._configured = configured_sinks(settings)
        self.index_cutoff = index_cutoff
        self.sinks: list[CountedSink] = []
        self._positions: PositionStore | None = None
        if not self._configured:
            return
        self._positions = PositionStore.from_settings(settings)
        started = {s.sink for s in self._positions.all()}
        for configured in self._configured:
            sink = configured.sink if isinstance(configured.sink, ElasticsearchSink) else None
            self.sinks.append(CountedSink(configured.name, sink, self._positions.counting_since(configured.name), configured.name in started, configured.where))

    def shortfall(
        self,
        day: dt.date,
        rows: int,
        ids: Callable[[], Iterator[Sequence[str]]],
        rows_after: Callable[[dt.datetime, str], int],
    ) -> str | None:
        """Why ``day`` must be kept because a sink does not hold all ``rows`` of its events, or None.

        ``ids`` streams the day's exported ids in batches; ``rows_after(created_at, id)`` counts
        the day's rows after a position (what a sink that started inside the day owes).
        """
        for sink in self.sinks:
            problem = self._sink_shortfall(sink, day, rows, ids, rows_after)
            if problem is not None:
                return problem
        return None

    def _sink_shortfall(
        self,
        sink: CountedSink,
        day: dt.date,
        rows: int,
        ids: Callable[[], Iterator[Sequence[str]]],
        rows_after: Callable[[dt.datetime, str], int],
    ) -> str | None:
        if sink.elasticsearch is not None and (self.index_cutoff is None or day >= self.index_cutoff):
            held = self._elasticsearch_count(sink.elasticsearch, day, ids)
            if held != rows:
                index = render_index(sink.elasticsearch.settings.index, _midnight(day))
                return f"sink {sink.name} holds {held:,} of the day's {rows:,} exported events (_count of their ids in {index}): kept until it holds them all"
            return None
        owed = rows
        counting = sink.counting
        if counting is None:
            if not sink.started:
                return None  # never started: the position hold decides (start: earliest/DAY keeps, start: now owes nothing)
            return f"sink {sink.name} has no delivered count for {day} (it delivered nothing since per-day counts were kept): kept"
        start = counting.position
        if start is not None and _midnight(day) <= start.created_at:
            whole_day_before = _midnight(day + dt.timedelta(days=1)) <= start.created_at
            if not counting.from_start:
                return (
                    f"sink {sink.name} delivered {day} before per-day delivered counts were kept (it counts from {start.created_at.isoformat()}), "
                    f"so delivery cannot be proven: kept; disable the sink ({sink.where}.enabled: false) if it is gone for good"
                )
            if whole_day_before:
                return None  # the sink started after this day: it owes none of it
            owed = rows_after(start.created_at, start.id)
        assert self._positions is not None
        held = self._positions.delivered_count(sink.name, day)
        if held != owed:
            more = "more than" if held > owed else "of"
            return f"sink {sink.name} delivered {held:,} {more} the day's {owed:,} events (delivered count in the state database): kept"
        return None

    @staticmethod
    def _elasticsearch_count(sink: ElasticsearchSink, day: dt.date, ids: Callable[[], Iterator[Sequence[str]]]) -> int:
        from elasticsearch import ApiError, NotFoundError

        index = render_index(sink.settings.index, _midnight(day))
        held = 0
        for batch in ids():
            try:
                answer: Any = sink.client.count(index=index, query={"ids": {"values": list(batch)}})
            except NotFoundError:
                return 0
            except ApiError as exc:
                raise AuditPipelineError(
                    f"Elasticsearch at {sink.description} refused counting {day}'s events in {index} ({exc.meta.status}); "
                    f"the credentials in {sink.where} need the read privilege on it"
                ) from None
            except Exception as exc:
                text = first_line(exc)
                raise AuditPipelineError(
                    f"Elasticsearch at {sink.description} failed while counting {day}'s events in {index}: {text} ({sink.where})"
                ) from None
            body = answer.body if hasattr(answer, "body") else answer
            held += int(body["count"])
        return held

    def close(self) -> None:
        for configured in self._configured:
            configured.sink.close()
        if self._positions is not None:
            self._positions.close()
