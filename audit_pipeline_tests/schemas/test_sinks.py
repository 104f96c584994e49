"""The ``schema:`` setting end to end: real PostgreSQL, ``audit-pipeline forward NAME --once``, the vendors'
stand-ins.  Elasticsearch gets ECS documents (allowed values only, ECS index template), Splunk CIM events,
Datadog and a webhook OCSF events that validate against the compiled OCSF schemas; every sink's privacy
settings hold in every field of every schema, and in the original kept inside the document."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.schemas.ecs import ALLOWED, EXPECTED_TYPES
from audit_pipeline_tests.schemas.ocsf_validator import OcsfValidator
from audit_pipeline_tests.sinks.events import recent
from audit_pipeline_tests.standins.datadog import DatadogIntake
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn
from audit_pipeline_tests.standins.splunk import SplunkHec
from audit_pipeline_tests.standins.webhook import WebhookReceiver

KEY = "schema-privacy-hash-key-3c1e5b2d4a607f3a"
SECRETS = {"AUDIT_PRIVACY_HASH_KEY": KEY, "DD_API_KEY": "dd-schema-api-key-1e7b5f3a9c", "SPLUNK_HEC_TOKEN": "1a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5e"}
WEBHOOK_SECRET = "schema-webhook-secret-5a8d7c6b"


@dataclass
class Setup:
    config: Path
    es: ElasticsearchStandIn
    datadog: Any  # the stand-ins' context managers are typed as their base Receiver
    splunk: Any
    webhook: Any
    events: list[dict[str, Any]]

    def forward(self, name: str) -> None:
        result = CliRunner().invoke(main, ["--config", str(self.config), "forward", name, "--once"], catch_exceptions=False)
        assert result.exit_code == 0, result.output


@pytest.fixture
def setup(pg: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    for name, value in {**SECRETS, "WEBHOOK_SECRET": WEBHOOK_SECRET}.items():
        monkeypatch.setenv(name, value)
    events = recent(400, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30))
    events[5].update(type="user.mfa_removed", actor_type="admin", resource_type="user", result="success")
    events[6].update(type="client.created", ip_address="2001:db8::7", country="DE")  # not in the table: the verb decides
    pg.insert(events)
    with (
        ElasticsearchStandIn() as es,
        DatadogIntake(api_key=SECRETS["DD_API_KEY"]) as datadog,
        SplunkHec(token=SECRETS["SPLUNK_HEC_TOKEN"]) as splunk,
        WebhookReceiver(secret=WEBHOOK_SECRET) as webhook,
    ):
        domain_and_net = {"mask": {"actor_email": "domain", "ip_address": 24}}
        config = {
            "source": {"database_url": pg.readonly_url},
            "export": {"url": str(workdir / "exports")},
            "state_url": f"sqlite:///{workdir}/state.db",
            "forwarding": {"settle_seconds": 1, "lease_seconds": 5, "retry": {"initial_seconds": 0.05, "max_seconds": 0.5, "give_up_seconds": 30}},
            "sinks": {
                "elasticsearch": {"url": es.url, "start": "earliest", "schema": "ecs", "privacy": domain_and_net},
                "datadog": {"api_key": "${DD_API_KEY}", "url": datadog.intake_url, "start": "earliest", "schema": "ocsf"},
                "splunk": {
                    "hec_url": splunk.url,
                    "hec_token": "${SPLUNK_HEC_TOKEN}",
                    "start": "earliest",
                    "schema": "cim",
                    "privacy": {"hash": ["actor_email"], "hash_key": "${AUDIT_PRIVACY_HASH_KEY}"},
                },
                "webhooks": [
                    {
                        "name": "SIEM",
                        "url": webhook.endpoint,
                        "secret": "${WEBHOOK_SECRET}",
                        "start": "earliest",
                        "schema": "ocsf",
                        "ocsf": {"version": "1.8.0"},
                        "privacy": domain_and_net,
                    }
                ],
            },
        }
        path = workdir / "audit_pipeline.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        yield Setup(path, es, datadog, splunk, webhook, events)


def _raw_emails(events: list[dict[str, Any]]) -> set[str]:
    return {e["actor_email"] for e in events if e["actor_email"]}


def test_every_sink_speaks_its_schema_and_keeps_its_privacy(setup: Setup, ocsf_schemas: dict[str, Any]) -> None:
    by_id = {e["id"]: e for e in setup.events}
    for name in ("elasticsearch", "datadog", "splunk", "webhook:SIEM"):
        setup.forward(name)

    # Elasticsearch: ECS documents under an ECS template; only allowed values; masked e-mail everywhere.
    (template,) = setup.es.templates.values()
    assert template["_meta"]["ecs_version"]
    properties = template["template"]["mappings"]["properties"]
    assert properties["source"]["properties"]["ip"] == {"type": "ip"} and properties["@timestamp"] == {"type": "date"}
    documents = setup.es.documents()
    assert set(documents) == set(by_id)
    stored = b""
    for doc_id, index in documents.items():
        doc = setup.es.source(index, doc_id)
        raw = by_id[doc_id]
        event = doc["event"]
        assert event["id"] == doc_id and event["action"] == raw["type"] and event["kind"] == "event"
        assert event["outcome"] == raw["result"] and event["outcome"] in ALLOWED["event.outcome"]
        assert set(event["category"]) <= ALLOWED["event.category"] and set(event["type"]) <= ALLOWED["event.type"]
        assert set(event["type"]) <= set().union(*(EXPECTED_TYPES[c] for c in event["category"]))
        assert doc["@timestamp"] == raw["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        original = json.loads(event["original"])
        assert original["id"] == doc_id
        if raw["actor_email"]:
            domain = raw["actor_email"].rpartition("@")[2]
            assert doc["user"]["email"] == domain and original["actor_email"] == domain
        if raw["ip_address"]:
            assert "ip" not in doc["source"] and doc["source"]["address"].endswith(("/24", "/48")) and original["ip_address"] == doc["source"]["address"]
        if raw["tenant_id"]:
            assert doc["labels"]["tenant_id"] == raw["tenant_id"]
        stored += json.dumps(doc, ensure_ascii=False).encode()
    assert not [e for e in _raw_emails(setup.events) if e.encode() in stored]
    login = next(setup.es.source(documents[i], i) for i, e in by_id.items() if e["type"] == "user.login")
    assert login["event"]["category"] == ["authentication", "session"] and login["event"]["type"] == ["start"]
    mfa = setup.es.source(documents[setup.events[5]["id"]], setup.events[5]["id"])
    assert mfa["event"]["category"] == ["iam"] and mfa["event"]["type"] == ["user", "change"]
    assert mfa["user"]["target"] == {"id": setup.events[5]["resource_id"]}

    # Datadog: the OCSF event under "ocsf", valid OCSF 1.1.0; Datadog's reserved attributes untouched.
    validator = OcsfValidator(ocsf_schemas["1.1.0"])
    assert len(setup.datadog.logs) == len(by_id)
    for log in setup.datadog.logs:
        assert validator.problems(log["ocsf"]) == []
        assert log["status"] in ("info", "warn") and log["ddsource"] == "hellojohn-audit"
    client = next(log["ocsf"] for log in setup.datadog.logs if log["ocsf"]["metadata"]["uid"] == setup.events[6]["id"])
    assert (client["class_uid"], client["activity_id"]) == (3004, 1) and client["unmapped"]["ip_address"] == "2001:db8::7"
    assert "src_endpoint" not in client  # OCSF 1.1.0 defines src_endpoint on Authentication and Account Change only

    # Splunk: CIM fields; the hashed e-mail in user/src_user and in the original; no raw e-mail sent.
    token = {e: hmac.new(KEY.encode(), e.encode(), hashlib.sha256).hexdigest() for e in _raw_emails(setup.events)}
    assert len(setup.splunk.events) == len(by_id)
    for envelope in setup.splunk.events:
        cim = envelope["event"]
        raw = by_id[cim["id"]]
        assert cim["app"] == "HelloJohn" and cim["hellojohn"]["id"] == raw["id"]
        expected_actor = token.get(raw["actor_email"]) if raw["actor_email"] else raw["actor_id"] or raw["actor_type"]
        assert cim["src_user"] == expected_actor and cim["hellojohn"]["actor_email"] == (token.get(raw["actor_email"]) if raw["actor_email"] else None)
        if cim["signature_id"] // 100 == 3002:
            assert cim["action"] == raw["result"] and cim["authentication_method"] in ("password", "mfa", "passkey", "token")
            assert cim["user"] == expected_actor
        else:
            assert cim["action"] in ("created", "modified", "deleted", "read") and cim["change_type"] == "AAA" and cim["status"] == raw["result"]
        assert cim["src"] == (raw["ip_address"] or "unknown")
    bodies = b"".join(r.body for r in setup.splunk.requests)
    assert not [e for e in _raw_emails(setup.events) if e.encode() in bodies]

    # The webhook: OCSF 1.8.0 bodies that validate; the masked e-mail is what unmapped holds.
    validator = OcsfValidator(ocsf_schemas["1.8.0"])
    assert len(setup.webhook.events) == len(by_id)
    for event in setup.webhook.events:
        assert validator.problems(event) == [] and event["metadata"]["version"] == "1.8.0"
        raw = by_id[event["metadata"]["uid"]]
        if raw["actor_email"]:
            domain = raw["actor_email"].rpartition("@")[2]
            assert event["unmapped"]["actor_email"] == domain and event["actor"]["user"]["domain"] == domain
    hooks = b"".join(r.body for r in setup.webhook.deliveries)
    assert not [e for e in _raw_emails(setup.events) if e.encode() in hooks]


def test_the_elasticsearch_standin_refuses_a_non_ecs_outcome_in_an_ecs_index() -> None:
    """Elastic's ECS pages close event.outcome to success/failure/unknown (and event.type, category, kind to theirs)."""
    from audit_pipeline.schemas.ecs import index_mappings

    with ElasticsearchStandIn() as es:
        headers = {"Content-Type": "application/json"}
        template = {"index_patterns": ["ecs-*"], "_meta": {"ecs_version": "8.11.0"}, "template": {"mappings": index_mappings()}}
        assert httpx.put(f"{es.url}/_index_template/ecs", json=template, headers=headers).status_code == 200
        plain = {"index_patterns": ["raw-*"], "template": {"mappings": index_mappings()}}
        assert httpx.put(f"{es.url}/_index_template/raw", json=plain, headers=headers).status_code == 200

        def bulk(index: str, doc: dict[str, Any]) -> dict[str, Any]:
            body = json.dumps({"create": {"_index": index}}) + "\n" + json.dumps(doc) + "\n"
            answer = httpx.put(f"{es.url}/_bulk", content=body, headers={"Content-Type": "application/x-ndjson"}).json()
            return dict(answer["items"][0]["create"])

        good = {
            "@timestamp": "2024-01-15T00:00:00.000001Z",
            "event": {"kind": "event", "category": ["authentication"], "type": ["start"], "outcome": "success"},
        }
        assert bulk("ecs-1", good)["status"] == 201
        bad = {**good, "event": {**good["event"], "outcome": "authentication_success"}}
        refused = bulk("ecs-1", bad)
        assert refused["status"] == 400 and "event.outcome" in refused["error"]["reason"]
        assert bulk("ecs-1", {**good, "event": {**good["event"], "type": ["authentication_success"]}})["status"] == 400
        assert bulk("raw-1", bad)["status"] == 201  # not an ECS index: Elasticsearch itself does not check values
        assert bulk("ecs-1", {**good, "source": {"ip": "203.0.113.0/24"}})["status"] == 400  # nested ip fields are checked too


def test_a_bad_event_type_table_stops_at_load_naming_the_setting(workdir: Path) -> None:
    config = {
        "sinks": {
            "splunk": {
                "hec_url": "https://splunk.example:8088",
                "hec_token": "t0k3n",
                "schema": "ocsf",
                "ocsf": {"event_types": {"user.switched": {"class_uid": 3002, "activity_id": 7}}},
            }
        }
    }
    path = workdir / "audit_pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["--config", str(path), "forward", "splunk", "--once"])
    assert result.exit_code == 2, result.output
    assert "sinks.splunk.ocsf.event_types.user.switched.activity_id: 7 is not an activity of class 3002 in OCSF 1.1.0" in result.output
    assert "Traceback" not in result.output
