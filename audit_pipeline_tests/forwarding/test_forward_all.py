"""``audit-pipeline forward --all``: one follower process for every sink, one of them failing for a while,
and its Prometheus metrics scraped over HTTP."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.helpers import wait_until
from audit_pipeline_tests.sinks.events import recent
from audit_pipeline_tests.standins.datadog import DatadogIntake
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn
from audit_pipeline_tests.standins.splunk import SplunkHec
from audit_pipeline_tests.standins.webhook import WebhookReceiver

COMMAND = str(Path(sys.executable).parent / "audit-pipeline")
SECRETS = {"DD_API_KEY": "dd-all-api-key-7c1e5b", "SPLUNK_HEC_TOKEN": "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5e", "WEBHOOK_SECRET": "all-hook-secret-3f9a"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[tuple[str, str], float]:
    """``(sample name, sink)`` → value, from the follower's /metrics over HTTP."""
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, sample.labels.get("sink", "")): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if family.name.startswith("audit_pipeline_forward")
    }


@pytest.mark.slow
def test_one_follower_feeds_every_sink_and_a_failing_one_delays_only_itself(pg: PgDatabase, workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_") or k.startswith("AUDIT_TEST_")}
    env.update(SECRETS)
    port = _free_port()
    with (
        ElasticsearchStandIn() as es,
        SplunkHec(token=SECRETS["SPLUNK_HEC_TOKEN"]) as splunk,
        DatadogIntake(api_key=SECRETS["DD_API_KEY"]) as datadog,
        WebhookReceiver(secret=SECRETS["WEBHOOK_SECRET"]) as hook,
    ):
        config = {
            "source": {"database_url": pg.readonly_url},
            "export": {"url": str(workdir / "exports")},
            "state_url": f"sqlite:///{workdir}/state.db",
            "forwarding": {"lease_seconds": 5, "retry": {"initial_seconds": 0.05, "max_seconds": 0.5, "give_up_seconds": 5}},
            "sinks": {
                "elasticsearch": {"url": es.url, "start": "earliest"},
                "splunk": {"hec_url": splunk.url, "hec_token": "${SPLUNK_HEC_TOKEN}", "index": "hellojohn", "start": "earliest"},
                "datadog": {"api_key": "${DD_API_KEY}", "url": datadog.intake_url, "start": "earliest"},
                "webhooks": [{"name": "siem", "url": hook.endpoint, "secret": "${WEBHOOK_SECRET}", "start": "earliest"}],
            },
        }
        (workdir / "audit_pipeline.yaml").write_text(yaml.safe_dump(config))
        env["AUDIT_CONFIG"] = str(workdir / "audit_pipeline.yaml")
        splunk.busy = True  # 503 "Server is busy" (HEC code 9) to every event request until it recovers
        now = dt.datetime.now(dt.UTC)
        first = recent(120, now - dt.timedelta(minutes=5))
        pg.insert(first)
        follower = subprocess.Popen(
            [COMMAND, "forward", "--all", "--metrics-port", str(port), "--metrics-address", "127.0.0.1", "--liveness-file", str(workdir / "alive")],
            env=env,
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            def others_have(n: int) -> bool:
                return len(es.documents()) == n and len(datadog.logs) == n and len(hook.events) == n

            wait_until(lambda: others_have(120), "the healthy sinks to receive the first events")
            assert splunk.events == [] and any(r.answered == 503 for r in splunk.requests)
            # Splunk still failing: events committed now reach the others all the same.
            second = recent(80, now - dt.timedelta(minutes=1), seed=9)
            for n, event in enumerate(second):
                event["id"] = f"alog_second_{n:04d}"
            pg.insert(second)
            wait_until(lambda: others_have(200), "the healthy sinks to receive the events committed while splunk fails")
            assert splunk.events == []
            during = _scrape(port)
            assert during[("audit_pipeline_forward_delivered_events_total", "elasticsearch")] == 200
            assert during[("audit_pipeline_forward_delivered_events_total", "splunk")] == 0
            assert during[("audit_pipeline_forward_retries_total", "splunk")] > 0
            assert during[("audit_pipeline_forward_retries_total", "elasticsearch")] == 0
            assert during[("audit_pipeline_forward_lag_seconds", "splunk")] > 30  # its oldest waiting event is minutes old
            splunk.busy = False  # recovers
            wait_until(lambda: len(splunk.events) == 200, "splunk to catch up after it recovered")
            wait_until(lambda: _scrape(port)[("audit_pipeline_forward_lag_seconds", "splunk")] < 30, "splunk's lag to fall once it caught up")
            after = _scrape(port)
            assert {
                sink: after[("audit_pipeline_forward_delivered_events_total", sink)] for sink in ("elasticsearch", "splunk", "datadog", "webhook:siem")
            } == {
                "elasticsearch": 200,
                "splunk": 200,
                "datadog": 200,
                "webhook:siem": 200,
            }
            assert after[("audit_pipeline_forward_dead_lettered_events_total", "splunk")] == 0
            assert (workdir / "alive").exists()
        finally:
            follower.send_signal(signal.SIGTERM)
            out, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        for secret in SECRETS.values():
            assert secret not in out + err
        expected = Counter(e["id"] for e in first + second)
        assert Counter(list(es.documents())) == expected and not es.duplicates()
        assert Counter(e["event"]["id"] for e in splunk.events) == expected
        assert Counter(log["id"] for log in datadog.logs) == expected
        assert len(hook.deliveries) == len(hook.events) == 200 and Counter(e["id"] for e in hook.events) == expected


def test_forward_needs_a_sink_or_all_but_not_both(workdir: Path) -> None:
    from click.testing import CliRunner

    from audit_pipeline.cli.app import main

    for args in (["forward"], ["forward", "elasticsearch", "--all"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and "a SINK name or --all" in result.output and "Traceback" not in result.output


def test_forward_all_once_runs_one_pass_per_enabled_sink(pg: PgDatabase, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from audit_pipeline.cli.app import main

    monkeypatch.setenv("WEBHOOK_SECRET", SECRETS["WEBHOOK_SECRET"])
    events = recent(50, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    pg.insert(events)
    with ElasticsearchStandIn() as es, WebhookReceiver(secret=SECRETS["WEBHOOK_SECRET"]) as hook:
        config = {
            "source": {"database_url": pg.readonly_url},
            "export": {"url": str(workdir / "exports")},
            "state_url": f"sqlite:///{workdir}/state.db",
            "sinks": {
                "elasticsearch": {"url": es.url, "start": "earliest"},
                "webhooks": [
                    {"name": "siem", "url": hook.endpoint, "secret": "${WEBHOOK_SECRET}", "start": "earliest"},
                    {"name": "off", "url": hook.url + "/off", "secret": "${WEBHOOK_SECRET}", "enabled": False},
                ],
            },
        }
        path = workdir / "audit_pipeline.yaml"
        path.write_text(yaml.safe_dump(config))
        first = CliRunner().invoke(main, ["--config", str(path), "forward", "--all", "--once"])
        assert first.exit_code == 0, first.output
        assert "elasticsearch: 50 delivered" in first.output and "webhook:siem: 50 delivered" in first.output and "webhook:off" not in first.output
        assert sorted(es.documents()) == sorted(e["id"] for e in events) and len(hook.deliveries) == 50
        again = CliRunner().invoke(main, ["--config", str(path), "forward", "--all", "--once"])
        assert again.exit_code == 0 and "elasticsearch: 0 delivered" in again.output and len(hook.deliveries) == 50
        refused = CliRunner().invoke(main, ["--config", str(path), "forward", "--all", "--once", "--metrics-port", "9108"])
        assert refused.exit_code == 2 and "--metrics-port is for following" in refused.output


def test_a_sink_held_by_another_process_does_not_stop_the_others_nor_the_liveness(pg: PgDatabase, tmp_path: Path) -> None:
    from audit_pipeline.forwarding.fleet import Fleet, SharedProbe
    from audit_pipeline.forwarding.positions import PositionStore
    from audit_pipeline.sources.postgres import PostgresSource
    from audit_pipeline_tests.forwarding.conftest import RecordingSink, make_forwarder

    events = recent(30, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    pg.insert(events)
    state_url = f"sqlite:///{tmp_path}/state.db"
    free, held = RecordingSink("free"), RecordingSink("held")
    forwarders = [make_forwarder(pg.url, sink, tmp_path, state_url=state_url, lease_seconds=30) for sink in (free, held)]
    other = PositionStore(state_url)
    assert other.acquire("held", "another-host:1:forwarder", 30) is None  # another process forwards "held"
    alive: Counter[str] = Counter()
    for forwarder in forwarders:
        forwarder.alive = lambda name=forwarder.sink.name: alive.update([name])
    probe_source = PostgresSource(pg.url)
    fleet = Fleet(forwarders, SharedProbe(probe_source), wait_for_lease=0.1, restart_seconds=0.1)
    fleet.start()
    try:
        wait_until(lambda: len(free.received) == 30, "the free sink to receive every event")
        wait_until(lambda: alive["held"] >= 2, "the held sink's thread to show it is alive while it waits")
    finally:
        fleet.stop.set()
        fleet.join(60)
        for forwarder in forwarders:
            forwarder.close()
            forwarder.source.close()
        probe_source.close()
        other.close()
    assert held.received == [] and Counter(free.received) == Counter(e["id"] for e in events)
    (held_follower,) = [f for f in fleet if f.name == "held"]
    assert held_follower.errors and "being forwarded by another-host:1:forwarder" in held_follower.errors[0]
