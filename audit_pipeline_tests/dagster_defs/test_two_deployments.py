"""Two HelloJohn deployments in one code location: the component's ``key_prefix`` keeps every key and name apart.

Each deployment reads its own PostgreSQL database and writes its own export store; the code location loads with
both, each deployment's job exports only its own events to its own store, records them on its own asset keys and
runs its own checks; ``AUDIT_*`` variables, which every deployment of the process would share, do not redirect a
prefixed one.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from audit_pipeline.defs.component import AuditLogs, ConfigurationNotLoaded
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.conftest import PgDatabase, drop_database, make_database

DAY = dt.date(2024, 1, 15)
PREFIXES = ("eu", "us")


@pytest.fixture
def second_database() -> Iterator[PgDatabase]:
    db = make_database("audit_test_us")
    yield db
    drop_database(db)


def _settings(database: PgDatabase, exports: Path) -> dict[str, Any]:
    return {"source": {"type": "postgres", "database_url": database.readonly_url}, "export": {"url": str(exports), "partition_start": "2024-01-01"}}


def _ids_in(exports: Path) -> set[str]:
    (ndjson,) = [p for p in exports.rglob("*.ndjson") if f"date={DAY.isoformat()}" in str(p)]
    return {json.loads(line)["id"] for line in ndjson.read_text().splitlines()}


def test_two_prefixed_deployments_load_together_and_each_exports_its_own_day(
    pg: PgDatabase, second_database: PgDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eu_events = list(generate_events(DAY, 120))
    us_events = [dict(e, id=f"us-{e['id']}") for e in generate_events(DAY, 75)]
    pg.insert(eu_events)
    second_database.insert(us_events)
    stores = {"eu": tmp_path / "eu-exports", "us": tmp_path / "us-exports"}
    shared = tmp_path / "from-the-environment"
    monkeypatch.setenv("AUDIT_EXPORT_URL", str(shared))  # what an unprefixed deployment would take; a prefixed one must not
    monkeypatch.setenv("AUDIT_DATABASE_URL", pg.readonly_url)

    defs = dg.Definitions.merge(
        AuditLogs(settings=_settings(pg, stores["eu"]), key_prefix="eu").build_definitions(),
        AuditLogs(settings=_settings(second_database, stores["us"]), key_prefix="us").build_definitions(),
    )
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    for prefix in PREFIXES:
        assert {f"{prefix}/audit_logs", f"{prefix}/audit_logs_csv", f"{prefix}/audit_logs_daily_summary"} <= keys
    assert all(key.split("/")[0] in PREFIXES for key in keys), sorted(keys)
    names = [job.name for job in repo.get_all_jobs() if not job.name.startswith("__")]
    names += [sensor.name for sensor in repo.sensor_defs] + [schedule.name for schedule in repo.schedule_defs]
    assert names and all(name.split("__")[0] in PREFIXES for name in names), sorted(names)
    assert {"eu__daily_export_job", "us__daily_export_job", "eu__audit_alerts", "us__retention_schedule"} <= set(names)
    summary = repo.assets_defs_by_key[dg.AssetKey(["us", "audit_logs_daily_summary"])]
    assert summary.asset_deps[summary.key] == {dg.AssetKey(["us", "audit_logs_parquet"])}  # never the other deployment's

    instance = dg.DagsterInstance.ephemeral()
    for prefix, events in (("eu", eu_events), ("us", us_events)):
        result = defs.resolve_job_def(f"{prefix}__daily_export_job").execute_in_process(partition_key=DAY.isoformat(), instance=instance)
        assert result.success
        assert _ids_in(stores[prefix]) == {e["id"] for e in events}
        materialized = instance.fetch_materializations(dg.AssetKey([prefix, "audit_logs_csv"]), limit=1).records[0].asset_materialization
        assert materialized is not None and materialized.metadata["dagster/row_count"].value == len(events)
        checks = [e.asset_check_evaluation_data for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
        assert len(checks) == 9 and all(c.passed and c.asset_key.path[0] == prefix for c in checks), checks
    assert not shared.exists()


def test_a_prefix_that_is_no_dagster_name_part_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationNotLoaded) as caught:
        AuditLogs(settings={"export": {"url": str(tmp_path)}}, key_prefix="eu-west").build_definitions()
    assert "key_prefix: 'eu-west' is not a Dagster name part" in str(caught.value) and "\n" not in str(caught.value)


def test_a_prefixed_deployment_with_sinks_names_its_own_state_database(pg: PgDatabase, tmp_path: Path) -> None:
    settings = _settings(pg, tmp_path / "exports") | {"sinks": {"elasticsearch": {"url": "http://127.0.0.1:9"}}}
    with pytest.raises(ConfigurationNotLoaded, match=r"key_prefix eu with sinks or alerts needs its own state_url"):
        AuditLogs(settings=settings, key_prefix="eu").build_definitions()
    state = f"sqlite:///{tmp_path / 'eu-state.db'}"
    defs = AuditLogs(settings=settings | {"state_url": state}, key_prefix="eu").build_definitions()
    assert defs.get_repository_def().has_sensor_def("eu__elasticsearch_forwarder")
    assert dg.AssetKey(["eu", "audit_logs_in_elasticsearch"]) in defs.get_repository_def().asset_graph.get_all_asset_keys()


def test_a_prefix_needs_the_deployments_own_settings() -> None:
    with pytest.raises(ConfigurationNotLoaded, match=r"key_prefix eu needs this deployment's own attributes.settings or attributes.config_file"):
        AuditLogs(key_prefix="eu").build_definitions()
