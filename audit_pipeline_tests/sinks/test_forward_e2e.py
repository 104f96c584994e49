"""Datadog, Splunk and webhooks end to end: real PostgreSQL, ``audit-pipeline forward NAME --once``,
the stand-in receivers with faults, and the Dagster sensor and lag asset of each sink."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner, Result

from audit_pipeline.cli.app import main
from audit_pipeline.config.settings import load_settings
from audit_pipeline.defs.forwarding import build_forwarding_definitions
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline_tests.helpers import wait_until
from audit_pipeline_tests.sinks.events import recent
from audit_pipeline_tests.standins.datadog import DatadogIntake
from audit_pipeline_tests.standins.receiver import Fault
from audit_pipeline_tests.standins.splunk import SplunkHec
from audit_pipeline_tests.standins.webhook import WebhookReceiver

SECRETS = {
    "DD_API_KEY": "dd-e2e-api-key-5f3a9c1e7b",
    "SPLUNK_HEC_TOKEN": "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
    "WEBHOOK_SECRET": "whsec_" + "c2llbS1hdWRpdC1mb3J3YXJkLXNlY3JldC0wMTIzNDU2Nzg5",
    "USERS_WEBHOOK_SECRET": "users-hook-plain-secret-8d7c",
}
SIEM = "SIEM Audit Forward"
USERS = "User events"


@dataclass
class Pipeline:
    config: Path
    datadog: DatadogIntake
    splunk: SplunkHec
    siem: WebhookReceiver
    users: WebhookReceiver
    events: list[dict[str, Any]]  # as inserted, in (created_at, id) order

    def forward(self, sink: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(self.config), "forward", sink, "--once"], catch_exceptions=False)

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self.events]


@pytest.fixture
def pipeline(pg, workdir, monkeypatch) -> Iterator[Pipeline]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    now = dt.datetime.now(dt.UTC)
    events = recent(240, now - dt.timedelta(minutes=30)) + recent(30, now - dt.timedelta(days=2), seed=8)
    for n, event in enumerate(events[240:]):
        event["id"] = f"alog_old_{n:04d}"
    events.sort(key=lambda e: (e["created_at"], e["id"].encode()))
    pg.insert(events)
    with (
        DatadogIntake(api_key=SECRETS["DD_API_KEY"]) as datadog,
        SplunkHec(token=SECRETS["SPLUNK_HEC_TOKEN"]) as splunk,
        WebhookReceiver(secret=SECRETS["WEBHOOK_SECRET"]) as siem,
        WebhookReceiver(secret=SECRETS["USERS_WEBHOOK_SECRET"], path="/hooks/users") as users,
    ):
        config = {
            "source": {"database_url": pg.readonly_url},
            "export": {"url": str(workdir / "exports")},
            "state_url": f"sqlite:///{workdir}/state.db",
            "forwarding": {"settle_seconds": 1, "lease_seconds": 5, "retry": {"initial_seconds": 0.05, "max_seconds": 0.5, "give_up_seconds": 60}},
            "sinks": {
                "datadog": {"api_key": "${DD_API_KEY}", "url": datadog.intake_url, "service": "hellojohn", "source": "hellojohn-audit", "start": "earliest"},
                "splunk": {"hec_url": splunk.url, "hec_token": "${SPLUNK_HEC_TOKEN}", "index": "hellojohn", "sourcetype": "_json", "start": "earliest"},
                "webhooks": [
                    {
                        "name": SIEM,
                        "url": siem.endpoint,
                        "events": ["audit.*"],
                        "secret": "${WEBHOOK_SECRET}",
                        "headers": {"X-Source": "hellojohn", "X-Environment": "production"},
                        "timeout_seconds": 1,
                        "start": "earliest",
                    },
                    {"name": USERS, "url": users.endpoint, "events": ["audit.user.*"], "secret": "${USERS_WEBHOOK_SECRET}", "start": "earliest"},
                ],
            },
        }
        path = workdir / "audit_pipeline.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        yield Pipeline(path, datadog, splunk, siem, users, events)


def assert_no_secret(text: str) -> None:
    for value in SECRETS.values():
        assert value not in text


def test_datadog_gets_every_event_through_faults_and_old_ones_tagged_late(pipeline):
    pipeline.datadog.fail(Fault(status=429, headers={"Retry-After": "1"}), Fault(status=413), Fault(status=503), Fault(disconnect=True))
    result = pipeline.forward("datadog")
    assert result.exit_code == 0, result.output
    assert [log["id"] for log in pipeline.datadog.logs] == pipeline.ids  # each once, in order
    assert pipeline.datadog.dropped == [] and pipeline.datadog.wire_errors == []
    late = [log for log in pipeline.datadog.logs if log["id"].startswith("alog_old_")]
    assert len(late) == 30 and all("timestamp" not in log and "late:true" in log["ddtags"] for log in late)
    assert [r.answered for r in pipeline.datadog.requests[:4]] == [429, 413, 503, None]
    assert_no_secret(result.output)
    before = len(pipeline.datadog.requests)
    assert pipeline.forward("datadog").exit_code == 0
    assert len(pipeline.datadog.requests) == before  # the position is durable: nothing re-sent


def test_splunk_gets_every_event_through_faults(pipeline):
    pipeline.splunk.fail(
        Fault(status=503, headers={"Retry-After": "1"}, body=b'{"text":"Server is busy","code":9}'),
        Fault(status=413),
        Fault(disconnect=True),
    )
    result = pipeline.forward("splunk")
    assert result.exit_code == 0, result.output
    assert [e["event"]["id"] for e in pipeline.splunk.events] == pipeline.ids
    assert all(e["index"] == "hellojohn" and e["sourcetype"] == "_json" for e in pipeline.splunk.events)
    assert pipeline.splunk.wire_errors == []
    assert_no_secret(result.output)


def test_splunk_with_indexer_acknowledgement(pipeline):
    config = yaml.safe_load(pipeline.config.read_text())
    config["sinks"]["splunk"].update(use_ack=True, ack_timeout_seconds=1)
    pipeline.config.write_text(yaml.safe_dump(config, sort_keys=False))
    pipeline.splunk.use_ack, pipeline.splunk.ack_after_polls = True, 2
    pipeline.splunk.fail(Fault(status=200, body=b'{"text":"Success","code":0,"ackId":999}'))  # an ack that never comes true
    result = pipeline.forward("splunk")
    assert result.exit_code == 0, result.output
    indexed = [e["event"]["id"] for e in pipeline.splunk.events]
    assert indexed == pipeline.ids  # the unconfirmed request was resent; the stand-in never stored it
    assert any(r.path == "/services/collector/ack" for r in pipeline.splunk.requests)


def test_webhook_gets_every_event_through_faults_signed(pipeline):
    pipeline.siem.fail(Fault(status=503), Fault(status=429, headers={"Retry-After": "1"}), Fault(delay=1.5), Fault(disconnect=True))
    result = pipeline.forward(f"webhook:{SIEM}")
    assert result.exit_code == 0, result.output
    assert [e["id"] for e in pipeline.siem.events] == pipeline.ids  # every event, in order, once per webhook-id
    assert pipeline.siem.wire_errors == []  # every delivery carried a valid signature
    assert {r.headers["x-source"] for r in pipeline.siem.deliveries} == {"hellojohn"}
    assert_no_secret(result.output)


def test_a_webhook_filter_delivers_exactly_the_matching_events(pipeline):
    result = pipeline.forward(f"webhook:{USERS}")
    assert result.exit_code == 0, result.output
    expected = [e["id"] for e in pipeline.events if e["type"].startswith("user.")]
    assert 0 < len(expected) < len(pipeline.events)
    assert [e["id"] for e in pipeline.users.events] == expected
    assert len(pipeline.users.deliveries) == len(expected)
    assert "not wanted by the sink" in result.output
    assert pipeline.forward(f"webhook:{USERS}").exit_code == 0
    assert len(pipeline.users.deliveries) == len(expected)


@pytest.mark.slow
def test_a_failing_sink_does_not_delay_a_healthy_one(pipeline):
    pipeline.datadog.outage = True
    env = {**os.environ, **SECRETS}
    stalled = subprocess.Popen(
        [str(Path(sys.executable).with_name("audit-pipeline")), "--config", str(pipeline.config), "forward", "datadog", "--once"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def datadog_failing() -> bool:  # the Datadog forwarder is up and failing
            assert stalled.poll() is None, stalled.communicate()[0]
            return bool(pipeline.datadog.requests)

        wait_until(datadog_failing, "the Datadog forwarder's first request")
        healthy = pipeline.forward("splunk")
        assert healthy.exit_code == 0, healthy.output
        assert [e["event"]["id"] for e in pipeline.splunk.events] == pipeline.ids
        assert stalled.poll() is None  # still retrying Datadog while Splunk got everything
        assert pipeline.datadog.logs == []
        pipeline.datadog.outage = False  # Datadog comes back: the same pass resumes, nothing lost
        output, _ = stalled.communicate(timeout=120)
    finally:
        if stalled.poll() is None:
            stalled.kill()
    assert stalled.returncode == 0, output
    assert [log["id"] for log in pipeline.datadog.logs] == pipeline.ids
    assert_no_secret(output)


@pytest.mark.slow
def test_a_forwarder_killed_mid_pass_loses_nothing_and_resends_at_most_one_batch(pipeline):
    config = yaml.safe_load(pipeline.config.read_text())
    config["forwarding"]["lease_seconds"] = 2  # the dead forwarder's lease runs out quickly
    pipeline.config.write_text(yaml.safe_dump(config, sort_keys=False))
    pipeline.siem.fail(*[Fault(delay=0.03) for _ in range(100)])  # a slow receiver at first
    killed = subprocess.Popen(
        [str(Path(sys.executable).with_name("audit-pipeline")), "--config", str(pipeline.config), "forward", f"webhook:{SIEM}", "--once"],
        env={**os.environ, **SECRETS},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def halfway() -> bool:
            assert killed.poll() is None, "the forwarder finished before it could be killed"
            return len(pipeline.siem.deliveries) >= 50

        wait_until(halfway, "50 webhook deliveries", interval=0.01)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        if killed.poll() is None:
            killed.kill()
    assert len(pipeline.siem.deliveries) < len(pipeline.events)
    result = pipeline.forward(f"webhook:{SIEM}")  # waits for the dead forwarder's lease to expire
    assert result.exit_code == 0, result.output
    assert [e["id"] for e in pipeline.siem.events] == pipeline.ids  # every event, once per webhook-id
    resent = len(pipeline.siem.deliveries) - len(pipeline.events)
    assert 0 <= resent <= 20  # at most the batch in flight (20 events for one-by-one webhooks)


def test_refused_credentials_stop_only_that_sink_naming_the_setting(pipeline):
    pipeline.datadog.api_key = "another-key"
    pipeline.splunk.token = "ffffffff-0000-0000-0000-000000000000"
    pipeline.siem.gone = True
    outputs = {}
    for sink, setting in (("datadog", "sinks.datadog.api_key"), ("splunk", "sinks.splunk.hec_token"), (f"webhook:{SIEM}", "sinks.webhooks")):
        result = pipeline.forward(sink)
        assert result.exit_code == 1, result.output
        assert setting in result.output and "STOPPED" in result.output
        outputs[sink] = result.output
    assert "410 Gone" in outputs[f"webhook:{SIEM}"]
    assert_no_secret("".join(outputs.values()))
    healthy = pipeline.forward(f"webhook:{USERS}")
    assert healthy.exit_code == 0
    pipeline.datadog.api_key = SECRETS["DD_API_KEY"]  # fixed: resumes from its kept position
    assert pipeline.forward("datadog").exit_code == 0
    assert [log["id"] for log in pipeline.datadog.logs] == pipeline.ids


def test_dagster_shows_one_sensor_and_one_lag_asset_per_sink(pipeline):
    settings = load_settings(pipeline.config)
    defs = dg.Definitions.merge(
        build_forwarding_definitions(settings), dg.Definitions(resources={"audit": AuditPipelineResource(config_path=str(pipeline.config))})
    )
    sinks = {"datadog": "datadog", "splunk": "splunk", f"webhook:{SIEM}": "webhook_SIEM_Audit_Forward", f"webhook:{USERS}": "webhook_User_events"}
    repo = defs.get_repository_def()
    assert {s.name for s in repo.sensor_defs} == {f"{slug}_forwarder" for slug in sinks.values()}
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {f"audit_logs_in_{slug}" for slug in sinks.values()} <= keys

    instance = dg.DagsterInstance.ephemeral()
    resources = {"audit": AuditPipelineResource(config_path=str(pipeline.config))}
    sensor = defs.resolve_sensor_def("datadog_forwarder")
    tick = sensor(dg.build_sensor_context(instance=instance, resources=resources))
    (observation,) = [e for e in tick.asset_events if isinstance(e, dg.AssetObservation)]  # besides the lag check's evaluation
    assert observation.asset_key == dg.AssetKey("audit_logs_in_datadog")
    assert observation.metadata["events_behind"].value == len(pipeline.events)
    assert_no_secret(json.dumps({k: str(v.value) for k, v in observation.metadata.items()}))
    (request,) = tick.run_requests
    run = defs.resolve_job_def("forward_datadog_job").execute_in_process(run_config=request.run_config, instance=instance, resources=resources)
    assert run.success
    assert [log["id"] for log in pipeline.datadog.logs] == pipeline.ids
    after = sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert after.run_requests == [] and after.asset_events[0].metadata["events_behind"].value == 0
    for event in instance.all_logs(run.run_id):
        assert_no_secret(str(event))


def test_datadog_requests_are_gzip_json_arrays_within_limits(pipeline):
    assert pipeline.forward("datadog").exit_code == 0
    for request in pipeline.datadog.requests:
        logs = json.loads(gzip.decompress(request.body))
        assert isinstance(logs, list) and 0 < len(logs) <= 1_000
