"""What an operator reads in the UI: every definition explains itself, and the figures it plots are numbers.

Dagster plots a metadata entry over time only when it is numeric (int or float metadata), so
the per-partition row counts and bytes of the exports and the per-sink lag observed by each
forwarding sensor must be stored as numbers, not text.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from audit_pipeline.config.settings import load_settings
from audit_pipeline.defs import integrity, retention
from audit_pipeline.defs.exports import EXPORT_ASSETS
from audit_pipeline.defs.forwarding import build_forwarding_definitions, lag_asset_key
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.built_defs import export_definitions
from audit_pipeline_tests.forwarding.conftest import es, write_config  # noqa: F401  (the es fixture)

DAY = dt.date(2024, 2, 29)
NUMBER = (dg.IntMetadataValue, dg.FloatMetadataValue)


@pytest.fixture
def with_a_sink(pg, workdir, es):  # noqa: F811
    config = write_config(workdir / "audit_pipeline.yaml", database_url=pg.readonly_url, es_url=es.url, export_url=str(workdir / "exports"))
    resources = {"audit": AuditPipelineResource(config_path=str(config))}
    # the code location as audit_pipeline.definitions builds it, with this configuration's sink
    merged = dg.Definitions.merge(
        export_definitions().definitions(),
        build_forwarding_definitions(load_settings(config)),
        integrity.build_integrity_definitions(),
        retention.build_retention_definitions(),
        dg.Definitions(resources=resources, executor=dg.in_process_executor),
    )
    return merged, resources


def test_every_definition_has_a_description_owner_group_and_kind(with_a_sink):
    defs, _ = with_a_sink
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        where = key.to_user_string()
        assert node.description, where
        assert node.owners, where
        assert node.group_name and node.group_name != "default", where
        assert node.kinds, where
    assert lag_asset_key("elasticsearch") in graph.get_all_asset_keys()
    for check_key in graph.asset_check_keys:
        assert graph.get_check_spec(check_key).description, check_key
    for job in repo.get_all_jobs():
        assert job.name == "__ASSET_JOB" or job.description, job.name
    for schedule in repo.schedule_defs:
        assert schedule.description, schedule.name
    assert [s.name for s in repo.sensor_defs] == ["elasticsearch_forwarder"]
    for sensor in repo.sensor_defs:
        assert sensor.description, sensor.name


def test_export_figures_and_sink_lag_are_numeric(with_a_sink, pg):
    defs, resources = with_a_sink
    pg.insert(generate_events(DAY, 30))
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        partition_key=DAY.isoformat(), instance=instance, asset_selection=list(EXPORT_ASSETS.values())
    )
    assert result.success
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        for name in ("dagster/row_count", "dagster/partition_row_count", "bytes"):
            assert isinstance(metadata[name], NUMBER), (event.asset_key, name)
        assert metadata["dagster/row_count"].value == 30

    sensor = defs.resolve_sensor_def("elasticsearch_forwarder")
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources))
    (observation,) = [e for e in tick.asset_events if isinstance(e, dg.AssetObservation)]  # besides the lag check's evaluation
    assert observation.asset_key == lag_asset_key("elasticsearch")
    for name in ("events_behind", "seconds_behind", "dead_letters"):
        assert isinstance(observation.metadata[name], NUMBER), name
    assert observation.metadata["events_behind"].value == 30
