"""The Dagster side: one sensor per sink requests runs for pending ranges; the job forwards; lag is observed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from audit_pipeline.config.settings import load_settings
from audit_pipeline.defs.component import AuditLogs, ConfigurationNotLoaded
from audit_pipeline.defs.forwarding import build_forwarding_definitions, lag_asset_key
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.forwarding.positions import PositionStore
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.forwarding.conftest import write_config
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

DAY = dt.date(2024, 1, 15)


@pytest.fixture
def setup(pg: PgDatabase, workdir: Path, es: ElasticsearchStandIn):
    config = write_config(
        workdir / "audit_pipeline.yaml",
        database_url=pg.url,
        es_url=es.url,
        export_url=str(workdir / "exports"),
        forwarding={"retry": {"initial_seconds": 0.05, "max_seconds": 0.1, "give_up_seconds": 0.5}},
    )
    resources = {"audit": AuditPipelineResource(config_path=str(config))}
    defs = dg.Definitions.merge(build_forwarding_definitions(load_settings(config)), dg.Definitions(resources=resources))
    return defs, resources, dg.DagsterInstance.ephemeral()


def _tick(defs: dg.Definitions, resources, instance):
    sensor = defs.resolve_sensor_def("elasticsearch_forwarder")
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources))


def _observation(data) -> dict:
    (event,) = [e for e in data.asset_events if isinstance(e, dg.AssetObservation)]
    assert event.asset_key == lag_asset_key("elasticsearch")
    return {k: v.value for k, v in event.metadata.items()}


def _lag_check(data) -> dg.AssetCheckEvaluation:
    (verdict,) = [e for e in data.asset_events if isinstance(e, dg.AssetCheckEvaluation)]
    assert verdict.asset_key == lag_asset_key("elasticsearch") and verdict.check_name == "lag_within_max"
    return verdict


def test_one_sensor_job_and_lag_asset_per_sink(setup) -> None:
    defs, _, _ = setup
    assert [s.name for s in defs.sensors] == ["elasticsearch_forwarder"]
    assert defs.resolve_job_def("forward_elasticsearch_job") is not None
    assert lag_asset_key("elasticsearch") in defs.resolve_all_asset_keys()


def test_pending_events_give_one_run_request_that_forwards_them(setup, pg: PgDatabase, es: ElasticsearchStandIn) -> None:
    defs, resources, instance = setup
    events = list(generate_events(DAY, 1_500))
    pg.insert(events)
    data = _tick(defs, resources, instance)
    (request,) = data.run_requests
    assert request.run_key.startswith("elasticsearch|(start)|") and request.tags["audit_pipeline/sink"] == "elasticsearch"
    lag = _observation(data)
    assert lag["events_behind"] == 1_500 and lag["seconds_behind"] > 0 and lag["dead_letters"] == 0
    job = defs.resolve_job_def("forward_elasticsearch_job")
    assert dg.validate_run_config(job, request.run_config)

    result = job.execute_in_process(run_config=request.run_config, instance=instance)
    assert result.success
    assert set(es.documents()) == {e["id"] for e in events} and not es.duplicates()
    (observed,) = result.get_asset_observation_events()
    metadata = {k: v.value for k, v in observed.asset_observation_data.asset_observation.metadata.items()}
    assert metadata["delivered"] == 1_500 and metadata["events_behind"] == 0

    idle = _tick(defs, resources, instance)
    assert not idle.run_requests and "nothing older than the horizon" in idle.skip_message
    assert _observation(idle)["events_behind"] == 0


def test_a_failed_run_leaves_the_range_pending_and_a_new_request_follows(setup, pg: PgDatabase, es: ElasticsearchStandIn) -> None:
    defs, resources, instance = setup
    pg.insert(generate_events(DAY, 200))
    first = _tick(defs, resources, instance).run_requests[0]
    es.outage(3600)
    job = defs.resolve_job_def("forward_elasticsearch_job")
    failed = job.execute_in_process(run_config=first.run_config, instance=instance, raise_on_error=False)
    assert not failed.success
    es.outage(0)
    retry = _tick(defs, resources, instance).run_requests[0]
    assert retry.run_key != first.run_key and retry.run_key.startswith("elasticsearch|(start)|")
    assert job.execute_in_process(run_config=retry.run_config, instance=instance).success
    assert len(es.documents()) == 200


def test_no_request_while_a_run_is_active_or_another_forwarder_holds_the_sink(setup, pg: PgDatabase, workdir: Path) -> None:
    defs, resources, instance = setup
    pg.insert(generate_events(DAY, 10))
    store = PositionStore(f"sqlite:///{workdir}/.audit_pipeline/state.db")
    store.acquire("elasticsearch", "cli-host:99:abcd", 60)
    held = _tick(defs, resources, instance)
    assert not held.run_requests and "cli-host:99:abcd holds elasticsearch's lease" in held.skip_message
    assert _observation(held)["events_behind"] == 10
    store.release("elasticsearch", "cli-host:99:abcd")
    request = _tick(defs, resources, instance).run_requests[0]
    job = defs.resolve_job_def("forward_elasticsearch_job")
    run = instance.create_run_for_job(job_def=job, run_config=request.run_config)
    busy = _tick(defs, resources, instance)
    assert not busy.run_requests and f"run {run.run_id} is forwarding" in busy.skip_message


def test_dead_letters_show_in_the_lag_observation(setup, pg: PgDatabase, es: ElasticsearchStandIn) -> None:
    defs, resources, instance = setup
    events = list(generate_events(DAY, 20))
    pg.insert(events)
    es.reject_ids({events[3]["id"], events[4]["id"]})
    request = _tick(defs, resources, instance).run_requests[0]
    job = defs.resolve_job_def("forward_elasticsearch_job")
    assert job.execute_in_process(run_config=request.run_config, instance=instance).success
    after = _tick(defs, resources, instance)
    assert _observation(after)["dead_letters"] == 2 and not after.run_requests


def test_a_configuration_error_fails_the_code_location_load_naming_the_setting(workdir: Path, monkeypatch) -> None:
    """No sink sensors half-loaded from a bad file: the whole load fails with the one-line reason (the UI shows it)."""
    (workdir / "bad.yaml").write_text("sinks:\n  elasticsearch:\n    url: http://es:9200\n    api_key: ${ES_API_KEY}\n")
    monkeypatch.setenv("AUDIT_CONFIG", str(workdir / "bad.yaml"))
    monkeypatch.delenv("ES_API_KEY", raising=False)
    with pytest.raises(ConfigurationNotLoaded) as caught:
        AuditLogs().build_definitions()
    message = str(caught.value)
    assert "sinks.elasticsearch.api_key" in message and "ES_API_KEY" in message and "\n" not in message


def test_a_late_commit_behind_the_position_gets_a_run_and_shows_on_the_lag_asset(setup, pg: PgDatabase, es: ElasticsearchStandIn) -> None:
    """Nothing new after the position, but a row committed behind it: the sensor still asks for a run."""
    defs, resources, instance = setup
    pg.fetch(
        "INSERT INTO audit_logs (id, type, result, created_at) SELECT 'recent-' || g, 'user.login', 'success', now() - g * interval '10 seconds'"
        " FROM generate_series(2, 40) AS g RETURNING id"
    )
    job = defs.resolve_job_def("forward_elasticsearch_job")
    (request,) = _tick(defs, resources, instance).run_requests
    assert job.execute_in_process(run_config=request.run_config, instance=instance).success
    idle = _tick(defs, resources, instance)
    assert not idle.run_requests and _observation(idle)["late_events_total"] == 0

    pg.fetch("INSERT INTO audit_logs (id, type, result, created_at) VALUES ('late-60s', 'user.login', 'success', now() - interval '60 seconds') RETURNING id")
    late = _tick(defs, resources, instance)
    (request,) = late.run_requests  # the sweep's two counts found it
    result = job.execute_in_process(run_config=request.run_config, instance=instance)
    assert result.success
    (observed,) = result.get_asset_observation_events()
    metadata = {k: v.value for k, v in observed.asset_observation_data.asset_observation.metadata.items()}
    assert metadata["late_events"] == 1 and metadata["late_events_total"] == 1
    assert "late-60s" in es.documents() and not es.duplicates()
    after = _tick(defs, resources, instance)
    assert not after.run_requests and _observation(after)["late_events_total"] == 1


def test_the_lag_check_fails_past_max_lag_seconds_and_passes_once_the_sink_caught_up(pg: PgDatabase, workdir: Path, es: ElasticsearchStandIn) -> None:
    config = write_config(
        workdir / "audit_pipeline.yaml", database_url=pg.url, es_url=es.url, export_url=str(workdir / "exports"), forwarding={"max_lag_seconds": "2m"}
    )
    resources = {"audit": AuditPipelineResource(config_path=str(config))}
    defs = dg.Definitions.merge(build_forwarding_definitions(load_settings(config)), dg.Definitions(resources=resources))
    instance = dg.DagsterInstance.ephemeral()
    pg.fetch("INSERT INTO audit_logs (id, type, result, created_at) VALUES ('old', 'user.login', 'success', now() - interval '5 minutes') RETURNING id")
    behind = _tick(defs, resources, instance)
    verdict = _lag_check(behind)
    assert not verdict.passed and verdict.severity == dg.AssetCheckSeverity.ERROR
    assert "over forwarding.max_lag_seconds=120" in (verdict.description or "") and verdict.metadata["events_behind"].value == 1
    # The check as an executable asset check (the UI's "Execute"): the same verdict.
    checks = dg.define_asset_job("lag_checks", selection=dg.AssetSelection.checks_for_assets(lag_asset_key("elasticsearch")))
    checked = (
        dg.Definitions.merge(defs, dg.Definitions(jobs=[checks])).resolve_job_def("lag_checks").execute_in_process(instance=instance, raise_on_error=False)
    )
    (evaluation,) = checked.get_asset_check_evaluations()
    assert not evaluation.passed
    (request,) = behind.run_requests
    assert defs.resolve_job_def("forward_elasticsearch_job").execute_in_process(run_config=request.run_config, instance=instance).success
    assert _lag_check(_tick(defs, resources, instance)).passed
