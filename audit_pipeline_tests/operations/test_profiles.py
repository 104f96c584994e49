"""The shipped Dagster instance profiles load and work: deploy/dagster.yaml against the real
PostgreSQL (as `dagster instance info` and a materialization see it), the local dagster.yaml,
and the Helm values that state the same limits for Kubernetes."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from dagster._core.instance.config import PoolGranularity

from audit_pipeline.defs.exports import EXPORT_ASSETS, EXPORT_POOL
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.built_defs import definitions_for
from audit_pipeline_tests.operations.conftest import PRODUCTION_PROFILE, REPO, write_home

DAGSTER = str(Path(sys.executable).parent / "dagster")
PASSWORD = "pw-dagster-s3cret"  # trust auth ignores it; it is here to show it is never printed


def _production_env(dagster_db) -> dict[str, str]:
    return {**os.environ, **dagster_db.env, "DAGSTER_PG_PASSWORD": PASSWORD}


def _tables(dagster_db) -> set[str]:
    url = f"postgresql://{dagster_db.env['DAGSTER_PG_USERNAME']}@{dagster_db.env['DAGSTER_PG_HOST']}:{dagster_db.env['DAGSTER_PG_PORT']}/{dagster_db.name}"
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}


@pytest.mark.slow
def test_production_profile_loads_with_dagster_instance_info(dagster_db, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(PRODUCTION_PROFILE, home / "dagster.yaml")  # as shipped, Docker run launcher included
    done = subprocess.run(
        [DAGSTER, "instance", "info"], env={**_production_env(dagster_db), "DAGSTER_HOME": str(home)}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage", "DockerRunLauncher", "granularity: run"):
        assert name in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    assert {"runs", "event_logs", "jobs", "job_ticks", "asset_keys", "concurrency_limits"} <= _tables(dagster_db)


@pytest.mark.slow
def test_production_profile_runs_a_partition_against_postgresql(dagster_db, tmp_path, pg, workdir, monkeypatch):
    for key, value in _production_env(dagster_db).items():
        monkeypatch.setenv(key, value)
    home = write_home(
        tmp_path / "home", PRODUCTION_PROFILE, compute_logs={"module": "dagster.core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"}
    )
    day = dt.date(2024, 3, 9)
    pg.insert(generate_events(day, 25))
    monkeypatch.setenv("AUDIT_DATABASE_URL", pg.readonly_url)
    monkeypatch.setenv("AUDIT_EXPORT_URL", str(workdir / "exports"))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        launcher = instance.run_launcher
        assert type(launcher).__name__ == "DockerRunLauncher"
        # everything a run container needs reaches it; the values stay in the daemon's environment
        assert {"DAGSTER_PG_PASSWORD", "AUDIT_DATABASE_URL", "AUDIT_EXPORT_URL", "AUDIT_CONFIG"} <= set(launcher.env_vars)
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_monitoring_enabled
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.pool_granularity == PoolGranularity.RUN
        assert concurrency.pool_config.default_pool_limit == 4

        job = definitions_for().resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(partition_key=day.isoformat(), instance=instance)
        assert result.success

    # A fresh instance (another process in production) reads the run and its events from PostgreSQL.
    with dg.DagsterInstance.from_config(str(home)) as reader:
        [run] = reader.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == day.isoformat()
        for key in EXPORT_ASSETS.values():
            event = reader.get_latest_materialization_event(key)
            assert event is not None and event.asset_materialization is not None
            assert event.asset_materialization.metadata["dagster/row_count"].value == 25
        assert PASSWORD not in str(reader.get_run_by_id(run.run_id))


def test_local_profile_loads_from_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its storage paths are relative: keep them out of the checkout
    with dg.DagsterInstance.from_config(str(REPO)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.pool_granularity == PoolGranularity.RUN
        assert concurrency.pool_config.default_pool_limit == 2
        assert concurrency.run_queue_config is not None and concurrency.run_queue_config.max_concurrent_runs == 4
    assert (tmp_path / ".dagster_home" / "storage").is_dir()


def _run_limits(config: dict) -> dict:
    return {
        "max_concurrent_runs": config["runs"]["max_concurrent_runs"],
        "tag_concurrency_limits": config["runs"]["tag_concurrency_limits"],
        "pool_granularity": config["pools"]["granularity"],
        "pool_default_limit": config["pools"]["default_limit"],
    }


def test_helm_values_state_the_production_limits():
    """The Kubernetes profile (Helm values) and the Docker profile (dagster.yaml) must not drift apart."""
    docker = yaml.safe_load(PRODUCTION_PROFILE.read_text())
    helm = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    concurrency = helm["concurrency"]
    from_helm = {
        "max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"],
        "tag_concurrency_limits": concurrency["runs"]["tagConcurrencyLimits"],
        "pool_granularity": concurrency["pools"]["granularity"],
        "pool_default_limit": concurrency["pools"]["defaultLimit"],
    }
    assert from_helm == _run_limits(docker["concurrency"])
    daemon = helm["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert daemon["runRetries"]["maxRetries"] == docker["run_retries"]["max_retries"]
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
    [deployment] = helm["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "audit_pipeline.definitions"]
    assert f"dagster instance concurrency set {EXPORT_POOL}" in (REPO / "deploy" / "helm" / "values.yaml").read_text()


@pytest.mark.slow
def test_definitions_validate_through_the_workspace(tmp_path):
    """What `dagster dev` loads from the repository root: the code location of workspace.yaml."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_"))}
    env["DAGSTER_HOME"] = str(tmp_path)  # its instance's storage, which would otherwise be the checkout's .dagster_home
    done = subprocess.run([DAGSTER, "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Validation successful for code location audit_pipeline" in done.stdout + done.stderr


def test_the_docker_files_agree_with_the_production_profile():
    """Names that must match across deploy/: the compose network, volume, services and what the runs receive."""
    deploy = REPO / "deploy"
    instance = yaml.safe_load((deploy / "dagster.yaml").read_text())
    compose = yaml.safe_load((deploy / "docker-compose.yaml").read_text())
    workspace = yaml.safe_load((deploy / "workspace.yaml").read_text())
    launcher = instance["run_launcher"]["config"]

    assert compose["networks"]["default"]["name"] == launcher["network"]
    [volume] = launcher["container_kwargs"]["volumes"]
    assert volume.split(":")[0] == compose["volumes"]["compute_logs"]["name"]
    [server] = workspace["load_from"]
    assert server["grpc_server"]["host"] in compose["services"]
    assert str(server["grpc_server"]["port"]) in (deploy / "Dockerfile").read_text()
    # every variable the instance reads, and every one a run receives, is set on the daemon
    daemon_env = set(compose["services"]["daemon"]["environment"])
    storage_vars = {v["env"] for v in instance["storage"]["postgres"]["postgres_db"].values() if isinstance(v, dict)}
    assert storage_vars <= daemon_env
    assert {v for v in launcher["env_vars"] if not v.startswith("AWS_")} <= daemon_env
    assert f"dagster instance concurrency set {EXPORT_POOL}" in " ".join(compose["services"]["daemon"]["command"])
    assert compose["services"]["code"]["environment"]["DAGSTER_CURRENT_IMAGE"] == compose["services"]["code"]["image"]


def test_the_deployment_pipeline_config_reads_everything_from_the_environment():
    from audit_pipeline.config.settings import load_settings
    from audit_pipeline.core.errors import ConfigError

    path = REPO / "deploy" / "audit_pipeline.yaml"
    env = {
        "AUDIT_DATABASE_URL": "postgresql://exporter:pw-x@db:5432/hellojohn",
        "AUDIT_EXPORT_URL": "s3://acme-audit/hellojohn",
        "AUDIT_STATE_URL": "postgresql://dagster:pw-y@dagster-db:5432/audit_state",
    }
    settings = load_settings(path, env=env)
    assert settings.export.url == "s3://acme-audit/hellojohn"
    assert settings.resolved_state_url() == env["AUDIT_STATE_URL"]
    assert settings.source.database_url is not None and settings.source.database_url.get_secret_value() == env["AUDIT_DATABASE_URL"]
    with pytest.raises(ConfigError, match="AUDIT_STATE_URL"):
        load_settings(path, env={k: v for k, v in env.items() if k != "AUDIT_STATE_URL"})
