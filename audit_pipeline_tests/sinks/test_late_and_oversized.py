"""Late commits, oversized events and unreachable receivers, end to end through `audit-pipeline forward NAME --once`
against real PostgreSQL and the stand-ins of Elasticsearch, Datadog, Splunk and a webhook."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline_tests.conftest import free_port
from audit_pipeline_tests.sinks.test_forward_e2e import SIEM, USERS, Pipeline, assert_no_secret, pipeline  # noqa: F401  (the fixture)
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

SINKS = ("elasticsearch", "datadog", "splunk", f"webhook:{SIEM}", f"webhook:{USERS}")


@pytest.fixture
def everywhere(pipeline: Pipeline) -> Iterator[tuple[Pipeline, ElasticsearchStandIn]]:  # noqa: F811
    """The e2e pipeline with Elasticsearch added beside Datadog, Splunk and the two webhooks."""
    with ElasticsearchStandIn() as es:
        config = yaml.safe_load(pipeline.config.read_text())
        config["sinks"]["elasticsearch"] = {"url": es.url, "start": "earliest"}
        pipeline.config.write_text(yaml.safe_dump(config, sort_keys=False))
        yield pipeline, es


def _received(p: Pipeline, es: ElasticsearchStandIn) -> dict[str, Counter[str]]:
    """Per sink, how many times each audit id arrived (webhooks: each delivery, not deduplicated)."""
    return {
        "elasticsearch": Counter({i: es.creates.get((name, i), 0) for i, name in es.documents().items()}),
        "datadog": Counter(log["id"] for log in p.datadog.logs),
        "splunk": Counter(e["event"]["id"] for e in p.splunk.events),
        f"webhook:{SIEM}": Counter(json.loads(r.body)["id"] for r in p.siem.deliveries if r.answered and r.answered < 300),
        f"webhook:{USERS}": Counter(json.loads(r.body)["id"] for r in p.users.deliveries if r.answered and r.answered < 300),
    }


def _insert_at(p: Pipeline, url: str, event_id: str, seconds_ago: float) -> None:
    """An event stamped ``seconds_ago`` by the database clock, committed now (as a writer stamping it itself would)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO audit_logs (id, type, result, actor_email, created_at) VALUES (%s, 'user.login', 'success', 'late@example.com', now() - %s * interval '1 second')",
            (event_id, seconds_ago),
        )


@pytest.mark.slow
def test_an_event_committed_30s_late_behind_the_position_reaches_every_sink_exactly_once(everywhere, pg):
    p, es = everywhere
    _insert_at(p, pg.url, "alog_zz_newest", 2)  # the position of every sink will pass 30 s ago
    for sink in SINKS:
        result = p.forward(sink)
        assert result.exit_code == 0, result.output
        assert "late (committed" not in result.output
    before = _received(p, es)
    assert all(counts["alog_zz_newest"] == 1 for counts in before.values())

    _insert_at(p, pg.url, "alog_late_30s", 30)  # behind every sink's position, committed after its pass
    for sink in SINKS:
        result = p.forward(sink)
        assert result.exit_code == 0, result.output
        assert "1 late (committed after the position had passed them)" in result.output, (sink, result.output)
    for sink in SINKS:  # a later pass finds nothing new: the ledger knows the late event was delivered
        result = p.forward(sink)
        assert result.exit_code == 0 and "late (committed" not in result.output, result.output
    after = _received(p, es)
    for sink, counts in after.items():
        assert counts["alog_late_30s"] == 1, sink
        assert max(counts.values()) == 1, sink  # nothing else was sent twice
        assert counts - Counter({"alog_late_30s": 1}) == before[sink], sink
    assert not es.duplicates() and es.conflicts == 0


def test_a_1mb_event_arrives_in_datadog_cut_and_marked_and_whole_in_the_dead_letters(pipeline, pg):  # noqa: F811
    big = {**pipeline.events[-1], "id": "alog_zz_big", "metadata": {"blob": "x" * 1_100_000, "reason": "kept"}}
    pg.insert([big])
    result = pipeline.forward("datadog")
    assert result.exit_code == 0, result.output
    assert "1 truncated to fit the sink" in result.output
    assert pipeline.datadog.truncated == []  # nothing over Datadog's 1 MB per log reached it
    (log,) = [log for log in pipeline.datadog.logs if log["id"] == "alog_zz_big"]
    assert log["truncated"] is True and log["truncated_fields"] == ["metadata.blob"]
    assert log["metadata"]["reason"] == "kept" and 0 < len(log["metadata"]["blob"]) < 1_000_000
    assert [log["id"] for log in pipeline.datadog.logs] == [*pipeline.ids, "alog_zz_big"]  # every event, once

    exports = Path(yaml.safe_load(pipeline.config.read_text())["export"]["url"])
    (record,) = [line for path in exports.rglob("*.ndjson") if "deadletters" in str(path) for line in path.read_bytes().splitlines()]
    whole = record[record.index(b'"event":') + len(b'"event":') : -1]
    event: dict[str, Any] = json.loads(whole)
    assert event["id"] == "alog_zz_big" and len(event["metadata"]["blob"]) == 1_100_000
    assert log["event_sha256"] == hashlib.sha256(whole).hexdigest()  # the copy names the whole event as exported
    assert b"1 MB per-log limit" in record and b"metadata.blob" in record
    replay = CliRunner().invoke(main, ["--config", str(pipeline.config), "deadletters", "replay", "datadog"])
    assert replay.exit_code == 0, replay.output
    assert sum(1 for log in pipeline.datadog.logs if log["id"] == "alog_zz_big") == 1  # kept for the record, not sent again


def test_an_oversized_event_reaches_splunk_cut_to_the_hec_maximum(pipeline, pg):  # noqa: F811
    config = yaml.safe_load(pipeline.config.read_text())
    config["sinks"]["splunk"]["max_request_bytes"] = 200_000
    pipeline.config.write_text(yaml.safe_dump(config, sort_keys=False))
    pg.insert([{**pipeline.events[-1], "id": "alog_zz_big", "metadata": {"blob": "é" * 150_000}}])
    result = pipeline.forward("splunk")
    assert result.exit_code == 0, result.output
    (event,) = [e["event"] for e in pipeline.splunk.events if e["event"]["id"] == "alog_zz_big"]
    assert event["truncated"] is True and event["truncated_fields"] == ["metadata.blob"] and len(event["event_sha256"]) == 64
    assert pipeline.splunk.wire_errors == []
    assert [e["event"]["id"] for e in pipeline.splunk.events] == [*pipeline.ids, "alog_zz_big"]


def test_an_unreachable_webhook_stops_naming_the_connection_error_and_the_setting(pipeline):  # noqa: F811
    port = free_port()  # nothing listens there
    config = yaml.safe_load(pipeline.config.read_text())
    config["sinks"]["webhooks"][0]["url"] = f"http://127.0.0.1:{port}/hooks/siem"
    config["forwarding"]["retry"] = {"initial_seconds": 0.01, "max_seconds": 0.05, "give_up_seconds": 0.5}
    pipeline.config.write_text(yaml.safe_dump(config, sort_keys=False))
    result = pipeline.forward(f"webhook:{SIEM}")
    assert result.exit_code == 1, result.output
    assert "STOPPED" in result.output
    assert f"connection refused by 127.0.0.1:{port}" in result.output
    assert "sinks.webhooks[0].url" in result.output
    assert "must be retried first" not in result.output
    assert_no_secret(result.output)


def test_an_unresolvable_splunk_host_is_named_as_a_dns_failure(pipeline):  # noqa: F811
    config = yaml.safe_load(pipeline.config.read_text())
    config["sinks"]["splunk"]["hec_url"] = "http://no-such-host.invalid:8088"
    config["forwarding"]["retry"] = {"initial_seconds": 0.01, "max_seconds": 0.05, "give_up_seconds": 0.5}
    pipeline.config.write_text(yaml.safe_dump(config, sort_keys=False))
    result = pipeline.forward("splunk")
    assert result.exit_code == 1, result.output
    assert "no-such-host.invalid:8088 could not be resolved (DNS)" in result.output and "sinks.splunk.hec_url" in result.output


def test_late_window_zero_turns_the_sweep_off(pipeline, pg):  # noqa: F811
    config = yaml.safe_load(pipeline.config.read_text())
    config["forwarding"]["late_window"] = 0
    pipeline.config.write_text(yaml.safe_dump(config, sort_keys=False))
    _insert_at(pipeline, pg.url, "alog_zz_newest", 2)
    assert pipeline.forward("datadog").exit_code == 0
    _insert_at(pipeline, pg.url, "alog_late_30s", 30)
    result = pipeline.forward("datadog")
    assert result.exit_code == 0 and "late (committed" not in result.output
    assert "alog_late_30s" not in {log["id"] for log in pipeline.datadog.logs}  # what the sweep exists for


def test_late_window_takes_a_duration(tmp_path) -> None:
    from audit_pipeline.config.sections.forwarding import ForwardingSettings

    assert ForwardingSettings.model_validate({"late_window": "15m"}).late_window == 900
    assert ForwardingSettings.model_validate({"late_window": "1h"}).late_window == 3600
    assert ForwardingSettings().late_window == 900
    with pytest.raises(ValueError, match="duration such as 15m"):
        ForwardingSettings.model_validate({"late_window": "soon"})


def test_dns_wording_has_no_secret_for_an_unreachable_datadog(pipeline):  # noqa: F811
    config = yaml.safe_load(pipeline.config.read_text())
    config["sinks"]["datadog"]["url"] = f"http://127.0.0.1:{free_port()}/api/v2/logs"
    config["forwarding"]["retry"] = {"initial_seconds": 0.01, "max_seconds": 0.05, "give_up_seconds": 0.5}
    pipeline.config.write_text(yaml.safe_dump(config, sort_keys=False))
    result = pipeline.forward("datadog")
    assert result.exit_code == 1 and "connection refused by 127.0.0.1" in result.output and "sinks.datadog.url" in result.output
    assert_no_secret(result.output)
