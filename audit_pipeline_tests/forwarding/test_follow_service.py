"""The follow mode as a service: real-time delivery with the defaults, SIGTERM mid-batch, the liveness file, the systemd unit."""

from __future__ import annotations

import configparser
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from audit_pipeline.forwarding.positions import PositionStore
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.forwarding.conftest import write_config
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

COMMAND = str(Path(sys.executable).parent / "audit-pipeline")
REPO = Path(__file__).resolve().parents[2]


def _follow(config: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_") or k.startswith("AUDIT_TEST_")}
    env["AUDIT_CONFIG"] = str(config)
    return subprocess.Popen([COMMAND, "forward", "elasticsearch", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_mid_batch_commits_what_was_acknowledged_and_nothing_past_it(pg: PgDatabase, workdir: Path, es: ElasticsearchStandIn) -> None:
    events = list(generate_events(dt.date(2024, 1, 15), 3_000))
    pg.insert(events)
    state_url = f"sqlite:///{workdir}/state.db"
    config = write_config(
        workdir / "audit_pipeline.yaml",
        database_url=pg.url,
        es_url=es.url,
        export_url=str(workdir / "exports"),
        state_url=state_url,
        elasticsearch={"batch_events": 200, "concurrency": 2},
    )
    third = threading.Event()
    es.bulk_delay = 0.3

    def on_bulk(number: int) -> None:
        if number == 3:
            third.set()

    es.on_bulk = on_bulk
    follower = _follow(config)
    assert third.wait(60), follower.communicate(timeout=5)
    follower.send_signal(signal.SIGTERM)  # while the 3rd bulk request (and maybe the 4th) is being applied
    _out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    state = PositionStore(state_url).get("elasticsearch")
    assert state is not None and state.position is not None
    indexed = set(es.documents())
    ordered = sorted(events, key=lambda e: (e["created_at"], e["id"].encode()))
    upto = [e["id"] for e in ordered[: state.delivered]]
    # the batches in flight were finished and committed: the position is exactly at what the sink acknowledged
    assert state.position.id == upto[-1] and indexed == set(upto) and len(indexed) < 3_000
    es.bulk_delay = 0.0
    es.on_bulk = None
    restarted = _follow(config, "--once")
    _out, err = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, err
    assert set(es.documents()) == {e["id"] for e in events} and not es.duplicates()
    assert es.conflicts == 0  # nothing acknowledged was sent again


@pytest.mark.slow
def test_a_follower_with_the_defaults_delivers_new_events_and_keeps_its_liveness_file_fresh(pg: PgDatabase, workdir: Path, es: ElasticsearchStandIn) -> None:
    state_url = f"sqlite:///{workdir}/state.db"
    config = write_config(workdir / "audit_pipeline.yaml", database_url=pg.url, es_url=es.url, export_url=str(workdir / "exports"), state_url=state_url)
    alive = workdir / "alive"
    follower = _follow(config, "--liveness-file", str(alive))
    try:
        _wait_for(alive.exists)
        for n in range(5):  # events committed while it follows, some sharing a timestamp
            with psycopg.connect(pg.url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO audit_logs (id, type, result) SELECT 'live_' || %s || '_' || g, 'user.login', 'success' FROM generate_series(1, 3) g", (n,)
                )
        _wait_for(lambda: len(es.documents()) == 15)
        touched = alive.stat().st_mtime_ns
        _wait_for(lambda: alive.stat().st_mtime_ns > touched)  # idle, it still probes and says so
        follower.send_signal(signal.SIGSTOP)  # a follower that stops making progress...
        stopped_at = alive.stat().st_mtime_ns
        time.sleep(3)
        assert alive.stat().st_mtime_ns == stopped_at  # ...leaves the file stale
        follower.send_signal(signal.SIGCONT)
    finally:
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert sorted(es.documents()) == sorted(f"live_{n}_{g}" for n in range(5) for g in range(1, 4)) and not es.duplicates()
    assert "elasticsearch: 15 delivered" in out  # the follower's summary line, flushed on exit


def test_the_systemd_unit_runs_the_documented_follow_command() -> None:
    unit = REPO / "deploy" / "systemd" / "audit-pipeline-forward@.service"
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    service = parser["Service"]
    assert service["ExecStart"].split()[1:] == ["forward", "%i", "--liveness-file", "/run/audit-pipeline/forward-%i.alive"]
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "always"
    assert "AUDIT_CONFIG=/etc/audit-pipeline/audit_pipeline.yaml" in service["Environment"]
    docs = (REPO / "docs" / "forwarding.md").read_text()
    assert "audit-pipeline-forward@.service" in docs and "--liveness-file" in docs
    _verify_unit(unit, "audit-pipeline-forward@elasticsearch.service")


def _verify_unit(unit: Path, instance_name: str) -> None:
    """The unit as systemd reads it (``systemd-analyze verify``, where available), with ExecStart pointing at
    this environment's command: no unknown key, no bad value."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        return
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"units-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    copy = folder / unit.name
    copy.write_text(unit.read_text().replace("/opt/audit-pipeline/bin/audit-pipeline", COMMAND))
    target = copy
    if instance_name != unit.name:  # a template: verify an instance of it
        target = folder / instance_name
        target.unlink(missing_ok=True)
        target.symlink_to(copy)
    try:
        checked = subprocess.run([analyze, "verify", str(target)], capture_output=True, text=True)
    finally:
        shutil.rmtree(folder)
    assert checked.returncode == 0 and str(folder) not in checked.stderr, checked.stderr


FOLLOW_ALL = "audit-pipeline forward --all --liveness-file /tmp/audit-pipeline-forward.alive --metrics-port 9108"


def test_the_compose_service_and_the_helm_chart_run_the_documented_follower_with_a_liveness_check_on_the_file() -> None:
    import yaml

    docs = (REPO / "docs" / "forwarding.md").read_text()
    assert FOLLOW_ALL in docs
    alive = "/tmp/audit-pipeline-forward.alive"
    stale_check = f"test $(( $(date +%s) - $(stat -c %Y {alive}) )) -lt 30"

    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yaml").read_text())
    service = compose["services"]["forwarder"]
    assert " ".join(service["command"]) == FOLLOW_ALL
    assert service["healthcheck"]["test"] == ["CMD-SHELL", stale_check.replace("$", "$$")]  # $$: a literal $ for compose
    assert service["stop_signal"] == "SIGTERM" and service["image"] == compose["services"]["code"]["image"]
    assert "9108:9108" in service["ports"] and service["environment"]["AUDIT_STATE_URL"].startswith("postgresql://")  # the state the sensors read

    chart = REPO / "deploy" / "helm" / "forwarder"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert " ".join(values["command"] + values["args"]) == FOLLOW_ALL
    assert values["livenessProbe"]["exec"]["command"] == ["sh", "-c", stale_check]
    assert str(values["metricsPort"]) == FOLLOW_ALL.rsplit(" ", 1)[1]
    template = (chart / "templates" / "deployment.yaml").read_text()
    for used in (".Values.command", ".Values.args", ".Values.livenessProbe", ".Values.metricsPort", ".Values.terminationGracePeriodSeconds"):
        assert used in template
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["apiVersion"] == "v2"
    for path in ("deploy/docker-compose.yaml", "deploy/helm/forwarder/values.yaml", "deploy/systemd/audit-pipeline-forward-all.service"):
        assert path in docs

    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((REPO / "deploy" / "systemd" / "audit-pipeline-forward-all.service").read_text())
    assert unit["Service"]["ExecStart"].split()[1:] == [
        "forward",
        "--all",
        "--liveness-file",
        "/run/audit-pipeline/forward-all.alive",
        "--metrics-port",
        "9108",
    ]
    assert unit["Service"]["KillSignal"] == "SIGTERM" and unit["Service"]["RestartPreventExitStatus"] == "2"
    _verify_unit(REPO / "deploy" / "systemd" / "audit-pipeline-forward-all.service", "audit-pipeline-forward-all.service")


STOP_WHILE_WAITING = """
import os, signal, threading
from audit_pipeline.cli.forward import _on_stop_signals

stop = threading.Event()
_on_stop_signals(stop)
with stop._cond:  # where the main thread is inside stop.wait() between two polls: the event's lock held
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(10_000):  # the handler runs at one of these bytecodes, with the lock still held
        pass
print("handler returned", stop.wait(30), flush=True)
"""


def test_sigterm_while_the_follower_holds_its_stop_events_lock_still_stops_it() -> None:
    """A follower that got SIGTERM at the wrong instant once never stopped (the handler waited for a lock its own
    thread held); the handler now never blocks, and the event is set as soon as the lock is free."""
    done = subprocess.run([sys.executable, "-c", STOP_WHILE_WAITING], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "handler returned True", done.stdout + done.stderr
