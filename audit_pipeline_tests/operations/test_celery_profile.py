"""The Celery profile's pieces on one host: the per-day export lock, the executor switch, deploy/celery/ agreeing with the code."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from audit_pipeline.config.settings import Settings
from audit_pipeline.core.errors import ConfigError, StorageError
from audit_pipeline.defs.executor import BROKER_SETTING, EXECUTOR_SETTING, celery_executor_config, run_executor
from audit_pipeline.exports.daylock import DayBusy, DayLockLost, day_lock
from audit_pipeline_tests.operations.conftest import PRODUCTION_PROFILE, REPO

DAY = dt.date(2024, 1, 15)
CELERY = REPO / "deploy" / "celery"

HOLDER = """
import datetime as dt, sys, time
from audit_pipeline.exports.daylock import day_lock
from audit_pipeline.config.settings import Settings
settings = Settings.model_validate({"export": {"url": sys.argv[1]}, "state_url": sys.argv[2] or None})
with day_lock(settings, dt.date(2024, 1, 15)):
    print("held", flush=True)
    time.sleep(600)
"""


def settings_for(export_url: str, state_url: str | None) -> Settings:
    return Settings.model_validate({"export": {"url": export_url}, "state_url": state_url})


def hold_in_another_process(export_url: str, state_url: str | None) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, export_url, state_url or ""], stdout=subprocess.PIPE, text=True, env={**os.environ})
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def wait_for_release(settings: Settings) -> None:
    with day_lock(settings, DAY, wait_seconds=60):
        pass


@pytest.mark.parametrize("state", ["postgresql", "sqlite"])
def test_one_export_of_a_day_at_a_time_and_a_killed_holder_frees_it(state, pg, tmp_path):
    export_url = f"s3://bucket-{state}/prefix"
    state_url = pg.url if state == "postgresql" else f"sqlite:///{tmp_path}/state.db"
    settings = settings_for(export_url, state_url)
    holder = hold_in_another_process(export_url, state_url)
    try:
        with pytest.raises(DayBusy, match=r"2024-01-15 is being exported by .*will be retried") as busy, day_lock(settings, DAY, wait_seconds=1):
            pass
        if state == "postgresql":  # the holder is named: host and process
            assert f"pid {holder.pid}" in str(busy.value)
        # Another day, or the same day of another export root, is not blocked.
        with day_lock(settings, DAY + dt.timedelta(days=1), wait_seconds=1):
            pass
        with day_lock(settings_for("s3://other-bucket/prefix", state_url), DAY, wait_seconds=1):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # SIGKILL ran no cleanup: the server (or the kernel) released the lock with the process.
    wait_for_release(settings)


def test_an_export_whose_lock_connection_ended_publishes_nothing(pg):
    settings = settings_for("s3://bucket/prefix", pg.url)
    with day_lock(settings, DAY) as lock:
        lock.confirm()
        with pg.connect() as admin:
            # this test's database only: other tests (parallel workers) lock the same day in theirs
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name LIKE 'audit_pipeline export 2024-01-15%%'"
            )
        with pytest.raises(DayLockLost, match=r"lock on 2024-01-15 was lost.*nothing was published"):
            lock.confirm()


def test_the_celery_profile_refuses_a_state_that_other_hosts_cannot_share(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIT_DAGSTER_EXECUTOR", "celery")
    with pytest.raises(ConfigError, match=r"set state_url to PostgreSQL"), day_lock(settings_for("s3://bucket/prefix", f"sqlite:///{tmp_path}/state.db"), DAY):
        pass


def test_an_unreachable_state_database_is_named_without_its_password():
    settings = settings_for("s3://bucket/prefix", "postgresql://audit:s3cret-pw@127.0.0.1:1/audit_state")
    with pytest.raises(StorageError, match=r"cannot reach the state database 127\.0\.0\.1:1/audit_state") as failure, day_lock(settings, DAY, wait_seconds=1):
        pass
    assert "s3cret" not in str(failure.value)


def test_the_executor_is_chosen_by_the_environment(monkeypatch):
    monkeypatch.delenv(EXECUTOR_SETTING, raising=False)
    assert run_executor().name == "in_process"
    monkeypatch.setenv(EXECUTOR_SETTING, "celery")
    monkeypatch.delenv(BROKER_SETTING, raising=False)
    with pytest.raises(ConfigError, match="DAGSTER_CELERY_BROKER_URL"):
        run_executor()
    monkeypatch.setenv(BROKER_SETTING, "pyamqp://guest:guest@127.0.0.1:5672//")
    assert run_executor().name == "celery"
    monkeypatch.setenv(EXECUTOR_SETTING, "kubernetes")
    with pytest.raises(ConfigError, match="AUDIT_DAGSTER_EXECUTOR='kubernetes': use in_process"):
        run_executor()


def test_workers_and_runs_share_one_celery_configuration():
    worker = yaml.safe_load((CELERY / "celery.yaml").read_text())["execution"]["config"]
    assert worker == celery_executor_config()
    assert worker["config_source"]["task_acks_late"] is True  # a killed worker's step goes to another worker


@pytest.mark.slow
def test_the_celery_instance_keeps_the_production_limits(tmp_path, dagster_db, monkeypatch):
    celery = yaml.safe_load((CELERY / "dagster.yaml").read_text())
    production = yaml.safe_load(PRODUCTION_PROFILE.read_text())
    for section in ("storage", "run_coordinator", "concurrency", "run_retries"):
        assert celery[section] == production[section], section
    assert "run_launcher" not in celery  # runs are processes of the daemon host; their steps go to Celery
    # It loads as an instance against PostgreSQL.
    for key, value in dagster_db.env.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((CELERY / "dagster.yaml").read_text())
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run([str(dagster), "instance", "info"], env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "class: DefaultRunLauncher" in done.stdout and "run_storage: PostgresRunStorage" in done.stdout


def test_the_worker_unit_starts_the_documented_worker():
    unit = (CELERY / "audit-pipeline-worker.service").read_text()
    assert "dagster-celery worker start -A dagster_celery.app -y /opt/dagster/app/deploy/celery/celery.yaml" in unit
    env = dict(line.split("=", 1) for line in (CELERY / "worker.env.example").read_text().splitlines() if line and not line.startswith("#"))
    assert env[EXECUTOR_SETTING] == "celery" and env["AUDIT_STATE_URL"].startswith("postgresql://")
    assert {"DAGSTER_PG_HOST", "DAGSTER_PG_DB", BROKER_SETTING, "AUDIT_EXPORT_URL"} <= set(env)
