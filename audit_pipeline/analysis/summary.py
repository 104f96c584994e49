"""The daily security summary: what happened on one UTC day, computed with DuckDB from that day's Parquet.

Only the day's own object is read for its figures; the previous ``history_days`` days' objects are
read for two columns sets only (actor and country for the new pairs, type and result for the
baseline), so the work per day is bounded whatever the archive's size.  The result is written as
``summary/date=YYYY-MM-DD/summary.json`` beside the exports (shape in docs/analysts.md).
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import orjson

from audit_pipeline.analysis.archive import attach_store, duckdb_message, duckdb_path, new_connection, parquet_key, sql_text
from audit_pipeline.config.sections.summary import SummarySettings
from audit_pipeline.core.errors import AuditPipelineError
from audit_pipeline.core.layout import SUMMARY_PREFIX as SUMMARY_PREFIX
from audit_pipeline.core.layout import summary_key as summary_key
from audit_pipeline.storage.object_store import ObjectStore

SUMMARY_VERSION = 1


class SummaryError(AuditPipelineError):
    """The day cannot be summarised (not exported yet, or its Parquet unreadable)."""


@dataclass(frozen=True)
class Baseline:
    """The previous days' failed logins and failure rates, reduced to median and MAD."""

    days: int
    failed_logins_median: float
    failed_logins_mad: float
    failure_rate_median: float
    failure_rate_mad: float

    @classmethod
    def of(cls, failed_logins: list[int], failure_rates: list[float]) -> Baseline:
        fl_median, fl_mad = median_and_mad([float(v) for v in failed_logins])
        fr_median, fr_mad = median_and_mad(failure_rates)
        return cls(len(failed_logins), fl_median, fl_mad, fr_median, fr_mad)


@dataclass(frozen=True)
class DaySummary:
    day: dt.date
    events: int
    failures: int
    distinct_actors: int
    logins: int
    failed_logins: int
    failure_rate: float
    events_by_type_result: list[dict[str, Any]]
    failed_logins_by_country: list[dict[str, Any]]
    top_actors_by_failures: list[dict[str, Any]]
    new_actor_country_pairs: int
    new_actor_country_examples: list[dict[str, Any]]
    baseline: Baseline
    login_types: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The documented ``summary.json`` shape."""
        return {
            "version": SUMMARY_VERSION,
            "day": self.day.isoformat(),
            "source": parquet_key(self.day),
            "login_types": list(self.login_types),
            "events": self.events,
            "failures": self.failures,
            "distinct_actors": self.distinct_actors,
            "logins": self.logins,
            "failed_logins": self.failed_logins,
            "failure_rate": self.failure_rate,
            "events_by_type_result": self.events_by_type_result,
            "failed_logins_by_country": self.failed_logins_by_country,
            "top_actors_by_failures": self.top_actors_by_failures,
            "new_actor_country_pairs": {"count": self.new_actor_country_pairs, "examples": self.new_actor_country_examples},
            "baseline": asdict(self.baseline),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DaySummary:
        pairs = data["new_actor_country_pairs"]
        return cls(
            day=dt.date.fromisoformat(data["day"]),
            events=data["events"],
            failures=data["failures"],
            distinct_actors=data["distinct_actors"],
            logins=data["logins"],
            failed_logins=data["failed_logins"],
            failure_rate=data["failure_rate"],
            events_by_type_result=data["events_by_type_result"],
            failed_logins_by_country=data["failed_logins_by_country"],
            top_actors_by_failures=data["top_actors_by_failures"],
            new_actor_country_pairs=pairs["count"],
            new_actor_country_examples=pairs["examples"],
            baseline=Baseline(**data["baseline"]),
            login_types=tuple(data.get("login_types", ())),
        )


def median_and_mad(values: list[float]) -> tuple[float, float]:
    """Median and median absolute deviation (unscaled); ``(0, 0)`` for no values."""
    if not values:
        return 0.0, 0.0
    middle = statistics.median(values)
    return round(float(middle), 6), round(float(statistics.median(abs(v - middle) for v in values)), 6)


def _rate(failed: int, attempts: int) -> float:
    return round(failed / attempts, 6) if attempts else 0.0


def _rows(connection: duckdb.DuckDBPyConnection, query: str) -> list[dict[str, Any]]:
    cursor = connection.execute(query)
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _login_predicate(patterns: tuple[str, ...]) -> str:
    return "(" + " OR ".join(f"type GLOB {sql_text(p)}" for p in patterns) + ")"


def history_days(store: ObjectStore, day: dt.date, days: int) -> list[dt.date]:
    """The exported days among the ``days`` before ``day`` (one existence check each: bounded)."""
    window = [day - dt.timedelta(days=n) for n in range(days, 0, -1)]
    return [d for d in window if store.exists(parquet_key(d))]


def summarize_day(store: ObjectStore, day: dt.date, settings: SummarySettings) -> DaySummary:
    """Compute the summary of ``day`` from its Parquet object and the previous days' objects."""
    if not store.exists(parquet_key(day)):
        raise SummaryError(f"{day} has no Parquet export at {store.uri(parquet_key(day))}; materialize audit_logs_parquet for {day} first")
    previous = history_days(store, day, settings.history_days)
    connection = new_connection()
    try:
        attach_store(connection, store)
        return _summarize(connection, store, day, previous, settings)
    except duckdb.Error as exc:
        raise SummaryError(f"summary of {day} failed reading {store.uri(parquet_key(day))}: {duckdb_message(exc)}") from None
    finally:
        connection.close()


def _summarize(connection: duckdb.DuckDBPyConnection, store: ObjectStore, day: dt.date, previous: list[dt.date], settings: SummarySettings) -> DaySummary:
    login = _login_predicate(settings.login_types)
    connection.execute(f"CREATE VIEW day AS SELECT * FROM read_parquet({sql_text(duckdb_path(store, parquet_key(day)))})")
    if previous:
        files = ", ".join(sql_text(duckdb_path(store, parquet_key(d))) for d in previous)
        connection.execute(f"CREATE VIEW history AS SELECT * FROM read_parquet([{files}], hive_partitioning = true, hive_types = {{'date': DATE}})")
    else:
        connection.execute("CREATE VIEW history AS SELECT NULL::DATE AS date, * FROM day LIMIT 0")

    (totals,) = _rows(
        connection,
        f"""SELECT count(*) AS events, count(*) FILTER (result = 'failure') AS failures,
                   count(DISTINCT actor_id) AS distinct_actors,
                   count(*) FILTER ({login}) AS logins, count(*) FILTER ({login} AND result = 'failure') AS failed_logins
            FROM day""",
    )
    by_type = _rows(connection, "SELECT type, result, count(*) AS events FROM day GROUP BY ALL ORDER BY events DESC, type, result")
    by_country = _rows(
        connection,
        f"""SELECT country, count(*) AS logins, count(*) FILTER (result = 'failure') AS failed_logins
            FROM day WHERE {login} GROUP BY country HAVING failed_logins > 0
            ORDER BY failed_logins DESC, country NULLS LAST""",
    )
    for row in by_country:
        row["failure_rate"] = _rate(row["failed_logins"], row["logins"])
    top_actors = _rows(
        connection,
        f"""SELECT actor_id, arg_max(actor_email, created_at) AS actor_email, count(*) AS failures
            FROM day WHERE result = 'failure' AND actor_id IS NOT NULL
            GROUP BY actor_id ORDER BY failures DESC, actor_id LIMIT {settings.top_actors}""",
    )
    connection.execute(
        """CREATE TEMP TABLE new_pairs AS
           SELECT actor_id, country, count(*) AS events FROM day
           WHERE actor_id IS NOT NULL AND country IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM history h WHERE h.actor_id = day.actor_id AND h.country = day.country)
           GROUP BY ALL"""
    )
    ((new_pairs,),) = connection.execute("SELECT count(*) FROM new_pairs").fetchall()
    examples = _rows(connection, f"SELECT actor_id, country, events FROM new_pairs ORDER BY events DESC, actor_id, country LIMIT {settings.new_pair_examples}")
    per_day = {
        row["date"]: row
        for row in _rows(
            connection,
            f"""SELECT date, count(*) FILTER ({login}) AS logins, count(*) FILTER ({login} AND result = 'failure') AS failed_logins
                FROM history GROUP BY date""",
        )
    }
    failed = [int(per_day[d]["failed_logins"]) if d in per_day else 0 for d in previous]
    rates = [_rate(per_day[d]["failed_logins"], per_day[d]["logins"]) for d in previous if d in per_day and per_day[d]["logins"]]
    return DaySummary(
        day=day,
        events=totals["events"],
        failures=totals["failures"],
        distinct_actors=totals["distinct_actors"],
        logins=totals["logins"],
        failed_logins=totals["failed_logins"],
        failure_rate=_rate(totals["failed_logins"], totals["logins"]),
        events_by_type_result=by_type,
        failed_logins_by_country=by_country,
        top_actors_by_failures=top_actors,
        new_actor_country_pairs=int(new_pairs),
        new_actor_country_examples=examples,
        baseline=Baseline.of(failed, rates),
        login_types=settings.login_types,
    )


def write_summary(store: ObjectStore, summary: DaySummary) -> str:
    """Publish ``summary.json`` atomically; returns its key."""
    key = summary_key(summary.day)
    store.put_bytes(key, orjson.dumps(summary.to_json(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE), "application/json")
    return key


def read_summary(store: ObjectStore, day: dt.date) -> DaySummary:
    try:
        return DaySummary.from_json(orjson.loads(store.read_bytes(summary_key(day))))
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise SummaryError(
            f"{store.uri(summary_key(day))} is not a summary this version reads ({exc}); materialize audit_logs_daily_summary for {day} again"
        ) from None
