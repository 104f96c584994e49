"""The daily summary: hand-computed figures, the no_spike check on constructed days, and a backfill that exports nothing."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from audit_pipeline.analysis.summary import SummaryError, summarize_day
from audit_pipeline.config.sections.summary import SummarySettings
from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.core.layout import summary_key
from audit_pipeline.defs import summary
from audit_pipeline.defs.partitions import daily_partitions_from
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.exports.day import export_day
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.built_defs import PARTITION_START, definitions_for, export_definitions

DAY = dt.date(2024, 5, 10)
_serial = iter(range(1, 10**9))


def event(day: dt.date, actor: str | None, country: str | None, type_: str, result: str, minute: int = 0) -> dict[str, Any]:
    n = next(_serial)
    return {
        "id": f"alog_{day:%Y%m%d}{n:08d}",
        "type": type_,
        "actor_id": actor,
        "actor_email": f"{actor}@example.com" if actor else None,
        "actor_type": "user" if actor else "system",
        "country": country,
        "result": result,
        "created_at": dt.datetime(day.year, day.month, day.day, 10, minute % 60, n % 60, tzinfo=dt.UTC),
        "metadata": {},
    }


def export_days(pg, store: ObjectStore, days: list[dt.date]) -> None:
    with PostgresSource(pg.readonly_url) as source:
        for day in days:
            export_day(source, store, day, ExportSettings())


def test_summary_of_a_constructed_day_equals_the_hand_computed_figures(pg, tmp_path: Path) -> None:
    before = DAY - dt.timedelta(days=1)
    pg.insert(
        [
            event(before, "usr_a", "US", "user.login", "success"),
            event(before, "usr_b", "DE", "user.login", "success"),
            *(event(DAY, "usr_a", "US", "user.login", "failure", m) for m in range(3)),
            event(DAY, "usr_a", "US", "user.login", "success", 5),
            event(DAY, "usr_b", "DE", "user.login_failed", "failure", 6),
            event(DAY, "usr_b", "DE", "user.login", "success", 7),
            event(DAY, "usr_b", "DE", "user.login", "success", 8),
            event(DAY, "usr_b", "US", "user.login", "success", 9),  # new pair
            event(DAY, "usr_c", "FR", "token.refreshed", "failure", 10),  # new pair, not a login
            event(DAY, None, None, "tenant.settings_updated", "success", 11),
        ]
    )
    store = ObjectStore(str(tmp_path / "archive"))
    export_days(pg, store, [before, DAY])
    got = summarize_day(store, DAY, SummarySettings())

    assert (got.events, got.failures, got.distinct_actors) == (10, 5, 3)
    assert (got.logins, got.failed_logins, got.failure_rate) == (8, 4, 0.5)
    assert got.failed_logins_by_country == [
        {"country": "US", "logins": 5, "failed_logins": 3, "failure_rate": 0.6},
        {"country": "DE", "logins": 3, "failed_logins": 1, "failure_rate": 0.333333},
    ]
    assert got.top_actors_by_failures == [
        {"actor_id": "usr_a", "actor_email": "usr_a@example.com", "failures": 3},
        {"actor_id": "usr_b", "actor_email": "usr_b@example.com", "failures": 1},
        {"actor_id": "usr_c", "actor_email": "usr_c@example.com", "failures": 1},
    ]
    assert got.events_by_type_result == [
        {"type": "user.login", "result": "success", "events": 4},
        {"type": "user.login", "result": "failure", "events": 3},
        {"type": "tenant.settings_updated", "result": "success", "events": 1},
        {"type": "token.refreshed", "result": "failure", "events": 1},
        {"type": "user.login_failed", "result": "failure", "events": 1},
    ]
    assert got.new_actor_country_pairs == 2
    assert got.new_actor_country_examples == [{"actor_id": "usr_b", "country": "US", "events": 1}, {"actor_id": "usr_c", "country": "FR", "events": 1}]
    assert (got.baseline.days, got.baseline.failed_logins_median, got.baseline.failure_rate_median) == (1, 0.0, 0.0)


def test_the_summary_reads_an_s3_archive_through_the_store(pg, s3_server) -> None:
    before = DAY - dt.timedelta(days=1)
    pg.insert(
        [
            event(before, "usr_a", "US", "user.login", "success"),
            event(DAY, "usr_a", "US", "user.login", "failure"),
            event(DAY, "usr_a", "NZ", "user.login", "failure"),
        ]
    )
    store = ObjectStore(f"s3://{s3_server.new_bucket()}/audit", endpoint_url=s3_server.endpoint_url)
    export_days(pg, store, [before, DAY])
    got = summarize_day(store, DAY, SummarySettings())
    assert (got.events, got.failed_logins, got.failure_rate, got.baseline.days) == (2, 2, 1.0, 1)
    assert got.new_actor_country_examples == [{"actor_id": "usr_a", "country": "NZ", "events": 1}]


def test_a_day_not_exported_yet_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SummaryError, match=r"2024-05-10 has no Parquet export at .*; materialize audit_logs_parquet for 2024-05-10 first"):
        summarize_day(ObjectStore(str(tmp_path)), DAY, SummarySettings())


# -- no_spike through Dagster, and a backfill that exports nothing --------------------------------------------

FIRST = dt.date(2024, 6, 1)
ORDINARY_FAILURES = [10, 12, 9, 11, 10, 13, 8, 11, 10, 12]  # days 1..10
SPIKE_DAY = FIRST + dt.timedelta(days=10)
AFTER_SPIKE = FIRST + dt.timedelta(days=11)
ACTORS = [(f"usr_{i:03d}", ("US", "DE", "FR", "BR")[i % 4]) for i in range(40)]


def _ordinary_day(day: dt.date, failures: int) -> list[dict[str, Any]]:
    """Every actor logs in once from its usual country; ``failures`` of them fail first."""
    rows = [event(day, actor, country, "user.login", "success", i) for i, (actor, country) in enumerate(ACTORS)]
    rows += [event(day, actor, country, "user.login", "failure", i) for i, (actor, country) in enumerate(ACTORS[:failures])]
    return rows


@pytest.fixture
def code_location(pg, workdir: Path):
    days = [FIRST + dt.timedelta(days=i) for i in range(12)]
    rows = [r for day, n in zip(days[:10], ORDINARY_FAILURES, strict=True) for r in _ordinary_day(day, n)]
    # The spike: 90 failed logins, 60 of them by 60 unseen actors from a new country.
    rows += _ordinary_day(SPIKE_DAY, 30) + [event(SPIKE_DAY, f"bot_{i:03d}", "KP", "user.login", "failure", i) for i in range(60)]
    rows += _ordinary_day(AFTER_SPIKE, 11)
    pg.insert(rows)
    store = ObjectStore(str(workdir / "archive"))
    export_days(pg, store, days)
    config = workdir / "audit_pipeline.yaml"
    config.write_text(yaml.safe_dump({"source": {"database_url": pg.readonly_url}, "export": {"url": store.root}, "summary": {"new_pairs_threshold": 20}}))
    resources = {"audit": AuditPipelineResource(config_path=str(config))}
    defs = dg.Definitions.merge(
        export_definitions().definitions(),
        summary.build_summary_definitions(daily_partitions_from(PARTITION_START)),
        dg.Definitions(resources=resources, executor=dg.in_process_executor),
    )
    return defs, store


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file() and "summary" not in p.parts}


@pytest.mark.slow
def test_no_spike_warns_on_the_spike_day_only_and_the_backfill_exports_nothing(code_location) -> None:
    defs, store = code_location
    job = defs.resolve_job_def("daily_summary_job")
    before = _snapshot(Path(store.root))
    instance = dg.DagsterInstance.ephemeral()
    verdicts = {}
    for day in [FIRST + dt.timedelta(days=i) for i in range(12)]:
        result = job.execute_in_process(partition_key=day.isoformat(), instance=instance)
        assert result.success
        assert {e.asset_key for e in result.get_asset_materialization_events()} == {summary.SUMMARY_ASSET}
        (evaluation,) = result.get_asset_check_evaluations()
        assert evaluation.check_name == "no_spike" and evaluation.severity == dg.AssetCheckSeverity.WARN
        verdicts[day] = evaluation
    # Nothing under csv/, ndjson/, parquet/ or the manifests was rewritten: the backfill re-exported nothing.
    assert _snapshot(Path(store.root)) == before
    assert not instance.get_latest_materialization_event(dg.AssetKey("audit_logs_parquet"))

    spike = verdicts[SPIKE_DAY]
    assert not spike.passed
    assert "failed logins 90 > 15.5 (median 10.5 + 5 × MAD 1 over 10 days)" in spike.description
    assert "60 new actor × country pairs > threshold 20" in spike.description
    assert "failure rate" in spike.description
    assert verdicts[AFTER_SPIKE].passed, verdicts[AFTER_SPIKE].description
    assert verdicts[FIRST + dt.timedelta(days=9)].passed, verdicts[FIRST + dt.timedelta(days=9)].description
    # too little history: reported as a warning "not evaluated", never a green pass
    assert verdicts[FIRST].description.startswith("not evaluated: 0 earlier day(s)") and not verdicts[FIRST].passed
    assert verdicts[FIRST].metadata["judged"].value is False

    written = json.loads(store.read_bytes(summary_key(SPIKE_DAY)))
    assert (written["failed_logins"], written["new_actor_country_pairs"]["count"], written["baseline"]["days"]) == (90, 60, 10)
    materialization = instance.get_latest_materialization_event(summary.SUMMARY_ASSET).asset_materialization
    assert materialization.partition == AFTER_SPIKE.isoformat()
    for name in ("events", "failed_logins", "distinct_actors", "new_actor_country_pairs"):
        assert isinstance(materialization.metadata[name], dg.IntMetadataValue), name
    assert isinstance(materialization.metadata["failure_rate"], dg.FloatMetadataValue)
    assert "| US |" in materialization.metadata["top_rows"].value


def test_the_summary_job_selects_only_the_summary() -> None:
    job = definitions_for().resolve_job_def("daily_summary_job")
    assert job.asset_layer.executable_asset_keys == {summary.SUMMARY_ASSET}
    assert {k.name for k in job.asset_layer.asset_graph.asset_check_keys if k.asset_key == summary.SUMMARY_ASSET} == {"no_spike"}


def test_invalid_summary_settings_name_the_key(workdir: Path) -> None:
    (workdir / "audit_pipeline.yaml").write_text(yaml.safe_dump({"summary": {"spike_factr": 3}}))
    with pytest.raises(ConfigError, match=r"summary\.spike_factr: unknown key"):
        summary.summary_settings(AuditPipelineResource(config_path=str(workdir / "audit_pipeline.yaml")))
