"""``audit-pipeline forward`` and ``audit-pipeline deadletters``: outages, dead letters, replay, exit codes, errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.forwarding.positions import PositionStore
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.conftest import PgDatabase, S3Server
from audit_pipeline_tests.forwarding.conftest import write_config
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

DAY = dt.date(2024, 1, 15)


def _forward(config: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


@pytest.fixture
def events(pg: PgDatabase) -> list[dict]:
    rows = list(generate_events(DAY, 2_000))
    pg.insert(rows)
    return rows


def _config(workdir: Path, pg: PgDatabase, es: ElasticsearchStandIn, export_url: str | None = None, **kwargs) -> Path:
    return write_config(workdir / "audit_pipeline.yaml", database_url=pg.url, es_url=es.url, export_url=export_url or str(workdir / "exports"), **kwargs)


def test_forward_once_delivers_the_backlog_with_progress_on_stderr(pg, workdir, es, events) -> None:
    result = _forward(_config(workdir, pg, es, elasticsearch={"batch_events": 300}), "forward", "elasticsearch", "--once", "--max-rate", "1000000")
    assert result.exit_code == 0, result.stderr
    assert "2,000 delivered, 0 dead-lettered" in result.stdout
    assert "2,000 events to forward" in result.stderr and "2,000/2,000 (100%)" in result.stderr
    assert set(es.documents()) == {e["id"] for e in events} and not es.duplicates()
    assert PositionStore(f"sqlite:///{workdir}/.audit_pipeline/state.db").get("elasticsearch").delivered == 2_000


def test_an_outage_of_the_sink_is_waited_out_and_the_backlog_delivered(pg, workdir, es, events) -> None:
    es.outage(2.0)
    result = _forward(_config(workdir, pg, es), "forward", "elasticsearch", "--once")
    assert result.exit_code == 0, result.stderr
    assert "retrying" in result.stderr or "to retry" in result.stderr
    assert any(status == 503 for _, _, status in es.requests)
    assert set(es.documents()) == {e["id"] for e in events} and not es.duplicates()


def test_an_outage_longer_than_the_retry_budget_stops_without_losing_anything(pg, workdir, es, events) -> None:
    config = _config(workdir, pg, es, forwarding={"retry": {"initial_seconds": 0.05, "max_seconds": 0.2, "give_up_seconds": 1}})
    sink_ready = _forward(config, "forward", "elasticsearch", "--once")  # template installed, all delivered
    assert sink_ready.exit_code == 0
    more = list(generate_events(DAY + dt.timedelta(days=1), 500))
    pg.insert(more)
    es.outage(3600)
    stopped = _forward(config, "forward", "elasticsearch", "--once")
    assert stopped.exit_code == 1
    assert "STOPPED" in stopped.stdout and "give_up_seconds=1" in stopped.stdout and "503" in stopped.stdout
    assert not set(es.documents()) & {e["id"] for e in more}
    es.outage(0)
    resumed = _forward(config, "forward", "elasticsearch", "--once")
    assert resumed.exit_code == 0 and "500 delivered" in resumed.stdout
    assert set(es.documents()) == {e["id"] for e in events + more} and not es.duplicates()


@pytest.mark.parametrize("store", ["local", "s3"])
def test_rejected_events_are_dead_lettered_then_replayed(pg, workdir, es, events, store, request) -> None:
    export_url = str(workdir / "exports")
    if store == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        export_url = f"s3://{s3.new_bucket()}/audit"
        config = _config(workdir, pg, es, export_url=export_url)
        text = config.read_text().replace("export:\n", f"export:\n  s3_endpoint_url: {s3.endpoint_url}\n")
        config.write_text(text)
    else:
        config = _config(workdir, pg, es)
    bad = {events[10]["id"]: "failed to parse field [metadata.attempt] of type [long]", events[1500]["id"]: "failed to parse field [country]"}
    es.reject_ids(bad)
    first = _forward(config, "forward", "elasticsearch", "--once")
    assert first.exit_code == 3
    assert "1,998 delivered, 2 dead-lettered" in first.stdout
    assert "audit-pipeline deadletters replay elasticsearch" in first.stderr
    assert set(es.documents()) == {e["id"] for e in events} - set(bad)

    listing = _forward(config, "deadletters", "list", "elasticsearch")
    assert listing.exit_code == 0 and "2 dead-lettered event(s)" in listing.stderr
    objects = ObjectStore(export_url, endpoint_url=request.getfixturevalue("s3_server").endpoint_url if store == "s3" else None)
    keys = objects.list("deadletters/elasticsearch")
    assert len(keys) == 1 and keys[0].startswith("deadletters/elasticsearch/date=2024-01-15/")  # one object per batch
    # an aligned table: a header, the key relative to the export root, the count, the first reason; no URI
    header, row = listing.stdout.splitlines()
    assert header.split() == ["KEY", "EVENTS", "FIRST", "REASON"] and "\t" not in listing.stdout
    assert row.split()[:2] == [keys[0], "2"] and "failed to parse field" in row
    assert row[: header.index("EVENTS") + len("EVENTS")].endswith(" 2") and "://" not in listing.stdout  # counts right-aligned
    assert objects.uri("") in listing.stderr
    records = [json.loads(line) for k in keys for line in objects.read_bytes(k).splitlines()]
    assert {r["event"]["id"]: r["reason"].split(": ", 1)[1] for r in records} == {i: f"[1:1] {reason}" for i, reason in bad.items()}

    still_bad = _forward(config, "deadletters", "replay", "elasticsearch")
    assert still_bad.exit_code == 3 and "2 rejected again" in still_bad.stdout
    es.clear_rejections()
    replayed = _forward(config, "deadletters", "replay", "elasticsearch")
    assert replayed.exit_code == 0 and "2 delivered, 0 rejected again" in replayed.stdout
    assert objects.list("deadletters/elasticsearch") == []
    assert set(es.documents()) == {e["id"] for e in events} and not es.duplicates()
    by_id = {e["id"]: e for e in events}
    for event_id in bad:
        assert es.source("hellojohn-audit-2024.01.15", event_id)["actor_email"] == by_id[event_id]["actor_email"]
    state = PositionStore(f"sqlite:///{workdir}/.audit_pipeline/state.db").get("elasticsearch")
    assert (state.dead_lettered, state.dead_letters_pending) == (2, 0)


def test_another_forwarder_holding_the_sink_is_reported(pg, workdir, es, events) -> None:
    config = _config(workdir, pg, es)
    store = PositionStore(f"sqlite:///{workdir}/.audit_pipeline/state.db")
    store.acquire("elasticsearch", "other-host:4242:abcd", 60)
    result = _forward(config, "forward", "elasticsearch", "--once", "--wait-for-lease", "0")
    assert result.exit_code == 1
    assert "being forwarded by other-host:4242:abcd" in result.stderr
    assert es.documents() == {}


def test_configuration_errors_exit_2_naming_the_key_and_never_print_secrets(pg, workdir, es, monkeypatch) -> None:
    config = _config(workdir, pg, es)
    unknown = _forward(config, "forward", "datadog-typo", "--once")
    assert unknown.exit_code == 2 and "no sink named 'datadog-typo'" in unknown.stderr and "configured: elasticsearch" in unknown.stderr
    config.write_text(config.read_text().replace(f"url: {es.url}", f"url: {es.url}\n    api_key: ${{ES_API_KEY}}"))
    missing = _forward(config, "forward", "elasticsearch", "--once")
    assert missing.exit_code == 2 and "sinks.elasticsearch.api_key" in missing.stderr and "ES_API_KEY" in missing.stderr


def test_refused_credentials_stop_with_the_setting_named_not_the_secret(pg, workdir, events, monkeypatch) -> None:
    with ElasticsearchStandIn(api_key="correct-key") as es:
        config = _config(workdir, pg, es)
        config.write_text(config.read_text().replace(f"url: {es.url}", f"url: {es.url}\n    api_key: ${{ES_API_KEY}}"))
        monkeypatch.setenv("ES_API_KEY", "Sup3rSecretValue")
        result = _forward(config, "forward", "elasticsearch", "--once")
    assert result.exit_code == 1
    assert "sinks.elasticsearch.api_key" in result.stdout
    assert "Sup3rSecretValue" not in result.stdout + result.stderr
