"""Elasticsearch: the sink's daily indices whose day is past the policy, deleted one by one by name.

Only an index whose whole name is the sink's pattern (``sinks.elasticsearch.index``, e.g.
``hellojohn-audit-%Y.%m.%d``) rendered for some day is ever considered; anything else the
listing returns (another application's index, ``hellojohn-audit-old``) is left alone.
Deletion names one concrete index per request, never a wildcard (Elasticsearch 8+ refuses
wildcard deletes by default, ``action.destructive_requires_name``), and an index already
gone counts as deleted, so a retried or concurrent run does no harm.

A sink that lags past the policy re-creates an old day's index when it delivers into it;
the next run deletes it again.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from audit_pipeline.config.sections.elasticsearch import render_index
from audit_pipeline.config.settings import Settings
from audit_pipeline.core.errors import AuditPipelineError, ConfigError, first_line
from audit_pipeline.sinks.elasticsearch import ElasticsearchSink
from audit_pipeline.sinks.elasticsearch_bulk import template_patterns

#: strftime codes an index pattern may use for retention, and what they match.
_CODES = {"Y": r"(\d{4})", "y": r"(\d{2})", "m": r"(\d{2})", "d": r"(\d{2})", "j": r"(\d{3})"}


@dataclass(frozen=True)
class IndexPattern:
    """Recognises the indices a strftime pattern names, and the UTC day each holds."""

    pattern: str
    regex: re.Pattern[str]
    codes: tuple[str, ...]

    @classmethod
    def compile(cls, pattern: str, where: str = "sinks.elasticsearch.index") -> IndexPattern:
        parts: list[str] = []
        codes: list[str] = []
        i = 0
        while i < len(pattern):
            char = pattern[i]
            if char == "%" and i + 1 < len(pattern):
                code = pattern[i + 1]
                if code == "%":
                    parts.append(re.escape("%"))
                elif code in _CODES:
                    parts.append(_CODES[code])
                    codes.append(code)
                else:
                    raise ConfigError(f"{where} {pattern!r} uses %{code}; retention.elasticsearch understands only %Y, %y, %m, %d and %j in index names")
                i += 2
                continue
            parts.append(re.escape(char))
            i += 1
        has_year = bool({"Y", "y"} & set(codes))
        has_day = "j" in codes or {"m", "d"} <= set(codes)
        if not (has_year and has_day):
            raise ConfigError(
                f"{where} {pattern!r} does not name one index per day (it needs a year and %m with %d, or %j); "
                "retention.elasticsearch deletes daily indices only"
            )
        return cls(pattern, re.compile("".join(parts)), tuple(codes))

    def day_of(self, name: str) -> dt.date | None:
        """The day an index holds, or None when the name is not exactly the pattern for a day."""
        match = self.regex.fullmatch(name)
        if not match:
            return None
        values = dict(zip(self.codes, (int(g) for g in match.groups()), strict=True))
        year = values.get("Y", 2000 + values.get("y", 0))
        try:
            day = dt.date(year, 1, 1) + dt.timedelta(days=values["j"] - 1) if "j" in values else dt.date(year, values["m"], values["d"])
        except (ValueError, OverflowError):
            return None
        # Every code must agree with that day (a name with %j and %m that disagree is not ours).
        rendered = render_index(self.pattern, dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC))
        return day if rendered == name else None


@dataclass(frozen=True)
class DailyIndex:
    name: str
    day: dt.date
    docs: int


def elasticsearch_sink(settings: Settings) -> ElasticsearchSink:
    """The configured Elasticsearch sink (enabled or not): its client and index pattern."""
    from audit_pipeline.forwarding.configured import configured_sinks

    for configured in configured_sinks(settings, include_disabled=True):
        if isinstance(configured.sink, ElasticsearchSink):
            return configured.sink
        configured.sink.close()
    raise ConfigError("retention.elasticsearch needs a sinks.elasticsearch section (the cluster and index pattern)")


class IndexRetention:
    """Lists and deletes the daily indices of one cluster."""

    def __init__(self, sink: ElasticsearchSink) -> None:
        self.sink = sink
        self.pattern = IndexPattern.compile(sink.settings.index, f"{sink.where}.index")

    def daily_indices(self) -> list[DailyIndex]:
        """Every index named by the pattern, oldest first (one ``_cat/indices`` request)."""
        expression = ",".join(template_patterns(self.pattern.pattern))
        rows = self._call(
            f"listing indices {expression}",
            lambda: self.sink.client.cat.indices(index=expression, format="json", h="index,docs.count", expand_wildcards="open,closed"),
        )
        body = rows.body if hasattr(rows, "body") else rows
        found = []
        for row in body or []:
            name = str(row.get("index", ""))
            day = self.pattern.day_of(name)
            if day is not None:
                docs = row.get("docs.count")
                found.append(DailyIndex(name, day, int(docs) if docs not in (None, "") else 0))
        return sorted(found, key=lambda index: (index.day, index.name))

    def delete(self, index: DailyIndex) -> bool:
        """Delete one index by its exact name; False when it was already gone."""
        from elasticsearch import NotFoundError

        if self.pattern.day_of(index.name) != index.day:  # never anything but a concrete daily index of ours
            raise AuditPipelineError(f"refusing to delete {index.name!r}: it is not a daily index of {self.pattern.pattern!r}")
        try:
            self._call(f"deleting index {index.name}", lambda: self.sink.client.indices.delete(index=index.name), passthrough=(NotFoundError,))
        except NotFoundError:
            return False
        return True

    def _call(self, what: str, action: Any, passthrough: tuple[type[BaseException], ...] = ()) -> Any:
        try:
            return action()
        except passthrough:
            raise
        except Exception as exc:
            from elasticsearch import ApiError

            if isinstance(exc, ApiError) and exc.meta.status in (401, 403):
                raise AuditPipelineError(
                    f"Elasticsearch at {self.sink.description} refused {what} ({exc.meta.status}); the credentials in {self.sink.where} "
                    f"need the monitor and delete_index privileges on {', '.join(template_patterns(self.pattern.pattern))}"
                ) from None
            text = first_line(exc)
            raise AuditPipelineError(f"Elasticsearch at {self.sink.description} failed while {what}: {text} ({self.sink.where})") from None

    def close(self) -> None:
        self.sink.close()
