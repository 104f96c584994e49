"""Privacy per sink: each stand-in receives exactly the configured view of every event, never a raw protected value.

Real PostgreSQL, ``audit-pipeline forward NAME --once`` for Elasticsearch, Datadog, Splunk and a
webhook, each with its own ``privacy:`` section; the expected values are computed here
independently (``hmac``, ``ipaddress``) from the rows as inserted.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
import yaml
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.config.sections.privacy import PrivacySettings
from audit_pipeline.config.settings import ExportSettings, load_settings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.exports.day import export_day
from audit_pipeline.forwarding.configured import configured_sinks
from audit_pipeline.sinks.privacy import PrivacyFilter
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.sinks.events import batch_of, recent
from audit_pipeline_tests.standins.datadog import DatadogIntake
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn
from audit_pipeline_tests.standins.splunk import SplunkHec
from audit_pipeline_tests.standins.webhook import WebhookReceiver

KEY = "privacy-hash-key-for-tests-7f3a9c1e5b2d4a60"
SECRETS = {
    "AUDIT_PRIVACY_HASH_KEY": KEY,
    "DD_API_KEY": "dd-privacy-api-key-5f3a9c1e7b",
    "SPLUNK_HEC_TOKEN": "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5e",
    "WEBHOOK_SECRET": "privacy-webhook-secret-8d7c6b5a",
}

PRIVACY = {
    "elasticsearch": {
        "hash": ["actor_email", "actor_id"],
        "drop": ["organization_id"],
        "mask": {"ip_address": 24},
        "metadata_keys": ["reason"],
        "hash_key": "${AUDIT_PRIVACY_HASH_KEY}",
    },
    "datadog": {
        "hash": ["actor_email"],
        "drop": ["resource_id"],
        "mask": {"ip_address": {"ipv4": 16, "ipv6": 32}},
        "metadata_keys": [],
        "hash_key": "${AUDIT_PRIVACY_HASH_KEY}",
    },
    "splunk": {"mask": {"actor_email": "domain", "ip_address": 48}, "drop": ["actor_id", "metadata"]},
    "webhook": {"hash": ["actor_email", "ip_address"], "hash_key": "${AUDIT_PRIVACY_HASH_KEY}"},
}


def token(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def network(value: str, v4: int, v6: int) -> str:
    address = ipaddress.ip_interface(value)
    prefix = min(v4 if address.version == 4 else v6, address.network.prefixlen)
    return str(ipaddress.ip_network(f"{address.ip}/{prefix}", strict=False))


def expected_view(event: dict[str, Any], rules: dict[str, Any]) -> dict[str, Any]:
    """The event as a sink with these rules must receive it (independent of the implementation)."""
    view = dict(event)
    for name in rules.get("drop", []):
        view[name] = {} if name == "metadata" else None
    for name in rules.get("hash", []):
        view[name] = None if event[name] is None else token(event[name])
    mask = rules.get("mask", {})
    if mask.get("actor_email") == "domain" and event["actor_email"] is not None:
        view["actor_email"] = event["actor_email"].rsplit("@", 1)[1].lower()
    if "ip_address" in mask and event["ip_address"] is not None:
        prefixes = mask["ip_address"]
        v4, v6 = (
            (prefixes, 48)
            if isinstance(prefixes, int) and prefixes <= 32
            else (24, prefixes)
            if isinstance(prefixes, int)
            else (prefixes["ipv4"], prefixes["ipv6"])
        )
        view["ip_address"] = network(event["ip_address"], v4, v6)
    if "metadata_keys" in rules:
        view["metadata"] = {k: v for k, v in event["metadata"].items() if k in rules["metadata_keys"]}
    return view


def received_form(event: dict[str, Any]) -> dict[str, Any]:
    """An inserted event as the exports (and an unprotected sink) carry it."""
    out = dict(event)
    out["created_at"] = event["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return out


@dataclass
class Sinks:
    config: Path
    exports: Path
    es: ElasticsearchStandIn
    datadog: DatadogIntake
    splunk: SplunkHec
    webhook: WebhookReceiver
    events: list[dict[str, Any]]

    def forward(self, name: str):
        return CliRunner().invoke(main, ["--config", str(self.config), "forward", name, "--once"], catch_exceptions=False)


@pytest.fixture
def sinks(pg, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sinks]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    events = recent(300, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30))
    events[7]["ip_address"] = "10.20.30.0/28"  # a network already: its own, shorter-than-/32 mask is kept when narrower
    events[8]["actor_email"] = events[9]["actor_email"]  # the same e-mail twice: the same token
    pg.insert(events)
    with (
        ElasticsearchStandIn() as es,
        DatadogIntake(api_key=SECRETS["DD_API_KEY"]) as datadog,
        SplunkHec(token=SECRETS["SPLUNK_HEC_TOKEN"]) as splunk,
        WebhookReceiver(secret=SECRETS["WEBHOOK_SECRET"]) as webhook,
    ):
        config = {
            "source": {"database_url": pg.readonly_url},
            "export": {"url": str(workdir / "exports")},
            "state_url": f"sqlite:///{workdir}/state.db",
            "forwarding": {"settle_seconds": 1, "lease_seconds": 5, "retry": {"initial_seconds": 0.05, "max_seconds": 0.5, "give_up_seconds": 30}},
            "sinks": {
                "elasticsearch": {"url": es.url, "start": "earliest", "privacy": PRIVACY["elasticsearch"]},
                "datadog": {"api_key": "${DD_API_KEY}", "url": datadog.intake_url, "start": "earliest", "privacy": PRIVACY["datadog"]},
                "splunk": {"hec_url": splunk.url, "hec_token": "${SPLUNK_HEC_TOKEN}", "start": "earliest", "privacy": PRIVACY["splunk"]},
                "webhooks": [
                    {
                        "name": "SIEM",
                        "url": webhook.endpoint,
                        "events": ["audit.*"],
                        "secret": "${WEBHOOK_SECRET}",
                        "start": "earliest",
                        "privacy": PRIVACY["webhook"],
                    }
                ],
            },
        }
        path = workdir / "audit_pipeline.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        yield Sinks(path, workdir / "exports", es, datadog, splunk, webhook, sorted(events, key=lambda e: (e["created_at"], e["id"].encode())))


def _bodies(requests: list[Any]) -> bytes:
    return b"\n".join(gzip.decompress(r.body) if r.headers.get("content-encoding") == "gzip" else r.body for r in requests)


def _raw_values(events: list[dict[str, Any]], rules: dict[str, Any]) -> set[bytes]:
    """Every protected value as it would appear in JSON: none of them may reach the sink."""
    protected = set(rules.get("drop", [])) | set(rules.get("hash", [])) | set(rules.get("mask", {}))
    found = set()
    for event in events:
        for name in protected - {"metadata"}:
            if event[name] is not None:
                found.add(json.dumps(event[name]).encode())
        if "metadata" in protected or "metadata_keys" in rules:
            found |= {json.dumps(v).encode() for k, v in event["metadata"].items() if k not in rules.get("metadata_keys", []) and isinstance(v, str)}
    return found


def _assert_absent(values: set[bytes], data: bytes, where: str) -> None:
    leaked = sorted(v for v in values if v in data)
    assert not leaked, f"{where} received raw protected values: {leaked[:3]}"


def test_every_sink_receives_exactly_its_configured_view_and_no_raw_value(sinks: Sinks) -> None:
    doomed = {sinks.events[3]["id"], sinks.events[40]["id"]}
    sinks.es.reject_ids(doomed, reason="mapper_parsing_exception")
    for name in ("elasticsearch", "datadog", "splunk", "webhook:SIEM"):
        result = sinks.forward(name)
        assert result.exit_code in (0, 3), result.output  # 3: some events dead-lettered (Elasticsearch)
        assert KEY not in result.output

    by_id = {e["id"]: received_form(e) for e in sinks.events}

    # Elasticsearch: the stored documents, and the dead letters of the two it rejected.
    documents = sinks.es.documents()
    assert set(documents) == set(by_id) - doomed
    es_sources = {doc_id: sinks.es.source(index, doc_id) for doc_id, index in documents.items()}
    for doc_id, source in es_sources.items():
        assert source == expected_view(by_id[doc_id], PRIVACY["elasticsearch"]), doc_id
    es_bytes = b"\n".join(orjson.dumps(s) for s in es_sources.values())
    _assert_absent(_raw_values(sinks.events, PRIVACY["elasticsearch"]), es_bytes, "elasticsearch")
    letters = b"".join(p.read_bytes() for p in (sinks.exports / "deadletters").rglob("*.ndjson"))
    dead = [json.loads(line)["event"] for line in letters.splitlines()]
    assert {e["id"] for e in dead} == doomed
    for event in dead:
        assert event == expected_view(by_id[event["id"]], PRIVACY["elasticsearch"])  # what the sink would have received
    _assert_absent(_raw_values(sinks.events, PRIVACY["elasticsearch"]), letters, "the dead letters")

    # Datadog: our fields at the top level of each log entry.
    assert [log["id"] for log in sinks.datadog.logs] == list(by_id)
    for log in sinks.datadog.logs:
        view = expected_view(by_id[log["id"]], PRIVACY["datadog"])
        assert {k: log[k] for k in view} == view
    _assert_absent(_raw_values(sinks.events, PRIVACY["datadog"]), _bodies(sinks.datadog.requests), "datadog")

    # Splunk HEC: the event inside each envelope.
    assert [e["event"]["id"] for e in sinks.splunk.events] == list(by_id)
    for envelope in sinks.splunk.events:
        assert envelope["event"] == expected_view(by_id[envelope["event"]["id"]], PRIVACY["splunk"])
    _assert_absent(_raw_values(sinks.events, PRIVACY["splunk"]), _bodies(sinks.splunk.requests), "splunk")

    # The webhook: one signed event per delivery.
    assert [e["id"] for e in sinks.webhook.events] == list(by_id)
    for event in sinks.webhook.events:
        assert event == expected_view(by_id[event["id"]], PRIVACY["webhook"])
    _assert_absent(_raw_values(sinks.events, PRIVACY["webhook"]), _bodies(sinks.webhook.deliveries), "the webhook")

    # Identical inputs, identical tokens: within a sink and across sinks sharing the key (joins still work).
    es_by_id = {**es_sources, **{e["id"]: e for e in dead}}
    assert es_by_id[sinks.events[8]["id"]]["actor_email"] == es_by_id[sinks.events[9]["id"]]["actor_email"]
    hook_by_id = {e["id"]: e for e in sinks.webhook.events}
    dd_by_id = {log["id"]: log for log in sinks.datadog.logs}
    for event_id in by_id:
        assert es_by_id[event_id]["actor_email"] == hook_by_id[event_id]["actor_email"] == dd_by_id[event_id]["actor_email"]
    assert len({e["actor_email"] for e in sinks.webhook.events if e["actor_email"]}) == len({e["actor_email"] for e in sinks.events if e["actor_email"]})


def test_the_exports_stay_exact(sinks: Sinks) -> None:
    sinks.forward("splunk")
    day = sinks.events[0]["created_at"].date()
    store = ObjectStore(str(sinks.exports))
    with PostgresSource(load_settings(sinks.config).source.database_url.get_secret_value()) as source:  # type: ignore[union-attr]
        export_day(source, store, day, ExportSettings())
    ndjson = (sinks.exports / "ndjson" / f"date={day}" / "audit_logs.ndjson").read_bytes()
    exported = {json.loads(line)["id"]: json.loads(line) for line in ndjson.splitlines()}
    for event in sinks.events:
        if event["created_at"].date() == day:
            assert exported[event["id"]]["actor_email"] == event["actor_email"]
            assert exported[event["id"]]["ip_address"] == event["ip_address"]


@pytest.mark.parametrize(
    ("privacy", "message"),
    [
        ({"hash": ["actor_email"]}, "sinks.datadog.privacy.hash_key: hash needs a key"),
        ({"hash": ["id"]}, "sinks.datadog.privacy.hash: id cannot be changed"),
        ({"drop": ["actor_mail"]}, "sinks.datadog.privacy.drop: 'actor_mail' is not an audit field"),
        ({"mask": {"ip_address": 200}}, "sinks.datadog.privacy.mask.ip_address: prefix length 200"),
        ({"mask": {"actor_email": "local"}}, "sinks.datadog.privacy.mask.actor_email: Input should be 'domain'"),
        ({"drop": ["actor_email"], "mask": {"actor_email": "domain"}}, "sinks.datadog.privacy.mask: actor_email is both in drop and in mask"),
        ({"hash": ["actor_email"], "hash_key": "short"}, "sinks.datadog.privacy.hash_key: must be at least 16 bytes"),
        ({"metadata_key": ["reason"]}, "sinks.datadog.privacy.metadata_key: unknown key"),
    ],
)
def test_invalid_privacy_settings_are_load_time_errors_naming_the_key(workdir: Path, privacy: dict[str, Any], message: str) -> None:
    config = {"sinks": {"datadog": {"api_key": "dd-key-0123456789", "privacy": privacy}}}
    (workdir / "audit_pipeline.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as error:
        configured_sinks(load_settings(workdir / "audit_pipeline.yaml"))
    assert message in str(error.value)
    assert "short" not in str(error.value)


# -- the transform alone ------------------------------------------------------------------------


def _events() -> list[dict[str, Any]]:
    base = {"type": "user.login", "result": "success", "created_at": dt.datetime(2024, 1, 15, tzinfo=dt.UTC)}
    return [
        {**base, "id": "a1", "actor_email": "Ann@Example.COM", "ip_address": "203.0.113.57", "metadata": {"reason": "x", "n": 123456789012345678901234567890}},
        {**base, "id": "a2", "actor_email": "ann@example.com", "ip_address": "2001:db8:abcd:12::7", "metadata": {"reason": "y"}},
        {**base, "id": "a3", "actor_email": "Ann@Example.COM", "ip_address": "not-an-ip", "metadata": {}},
        {**base, "id": "a4", "actor_email": None, "ip_address": None, "metadata": {"user_agent": "curl"}},
        {**base, "id": "a5", "actor_email": "no-at-sign", "ip_address": "10.0.0.0/8", "metadata": {"n": 1.50}},
    ]


def test_the_transform_per_distinct_value() -> None:
    settings = PrivacySettings.model_validate(
        {"hash": ["actor_email"], "mask": {"ip_address": 24}, "metadata_keys": ["n"], "drop": ["country"], "hash_key": KEY}
    )
    batch = batch_of(_events()).batch
    out = PrivacyFilter(settings)(batch)
    assert out.schema == batch.schema and out.num_rows == batch.num_rows
    assert out.column(0).to_pylist() == ["a1", "a2", "a3", "a4", "a5"]
    assert out.column(3).to_pylist() == [token("Ann@Example.COM"), token("ann@example.com"), token("Ann@Example.COM"), None, token("no-at-sign")]
    assert out.column(9).to_pylist() == ["203.0.113.0/24", "2001:db8:abcd::/48", None, None, "10.0.0.0/8"]
    assert out.column(10).to_pylist() == [None] * 5
    assert out.column(13).to_pylist() == ['{"n": 123456789012345678901234567890}', "{}", "{}", "{}", '{"n": 1.5}']
    # the input batch is untouched (the exports and the chain read their own copy)
    assert batch.column(3).to_pylist()[0] == "Ann@Example.COM"


def test_email_domain_mask_and_an_empty_batch() -> None:
    settings = PrivacySettings.model_validate({"mask": {"actor_email": "domain"}})
    out = PrivacyFilter(settings)(batch_of(_events()).batch)
    assert out.column(3).to_pylist() == ["example.com", "example.com", "example.com", None, None]
    empty = batch_of([]).batch
    assert PrivacyFilter(settings)(empty).num_rows == 0
    assert isinstance(empty, pa.RecordBatch)


def test_the_documented_example_is_what_the_transform_sends() -> None:
    from audit_pipeline.sinks.base import EventBatch

    page = (Path(__file__).resolve().parents[2] / "docs" / "forwarding.md").read_text(encoding="utf-8")
    section = page.split("## Privacy per sink", 1)[1].split("\n## ", 1)[0]
    config = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    privacy = config["sinks"]["webhooks"][0]["privacy"]
    exported, received = section.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    event = json.loads(exported)
    event["created_at"] = dt.datetime.fromisoformat(event["created_at"].replace("Z", "+00:00"))
    settings = PrivacySettings.model_validate({**privacy, "hash_key": "0123456789abcdef0123456789abcdef"})
    batch = batch_of([event])
    assert batch.line(0).decode() == exported
    assert EventBatch(PrivacyFilter(settings)(batch.batch)).line(0).decode() == received


# -- protected values repeated inside metadata ----------------------------------------------------

REPEATS = {
    "elasticsearch": {"hash": ["actor_email"], "mask": {"ip_address": 24}, "hash_key": "${AUDIT_PRIVACY_HASH_KEY}"},
    "webhook": {"drop": ["actor_email", "ip_address"], "metadata_keys": ["reason", "client.ip", "client.login.email", "actor"]},
}


def _repeating(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event's e-mail and address again in its metadata: top level, nested, in a list, as a key, in other case."""
    for n, event in enumerate(events):
        email, ip = event["actor_email"], event["ip_address"]
        if email is None or ip is None:
            continue
        event["metadata"] = {
            **event["metadata"],
            "actor": email.upper() if n % 2 else email,
            "client": {"ip": ip, "login": {"email": email, "via": [ip, "sso"]}, "agent": "curl/8.5"},
            "seen": {email: n},
        }
    return events


def _scrubbed(metadata: Any, raw: dict[str, Any]) -> Any:
    """``metadata`` with the raw values replaced as the rules say (``raw``: casefolded value → replacement, None drops)."""
    if isinstance(metadata, dict):
        out = {}
        for key, value in metadata.items():
            new_key = raw.get(key.casefold(), key)
            value = _scrubbed(value, raw)
            if new_key is not None and value is not _DROPPED:
                out[new_key] = value
        return out
    if isinstance(metadata, list):
        return [v for v in (_scrubbed(item, raw) for item in metadata) if v is not _DROPPED]
    if isinstance(metadata, str) and metadata.casefold() in raw:
        return _DROPPED if raw[metadata.casefold()] is None else raw[metadata.casefold()]
    return metadata


_DROPPED = object()


def test_an_email_and_address_repeated_in_metadata_reach_no_sink(pg, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_PRIVACY_HASH_KEY", KEY)
    events = _repeating(recent(120, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)))
    repeating = [e for e in events if "client" in e["metadata"]]
    assert len(repeating) > 60
    pg.insert(events)
    with ElasticsearchStandIn() as es, WebhookReceiver(secret=SECRETS["WEBHOOK_SECRET"]) as webhook:
        monkeypatch.setenv("WEBHOOK_SECRET", SECRETS["WEBHOOK_SECRET"])
        config = {
            "source": {"database_url": pg.readonly_url},
            "export": {"url": str(workdir / "exports")},
            "state_url": f"sqlite:///{workdir}/state.db",
            "forwarding": {"settle_seconds": 1, "lease_seconds": 5},
            "sinks": {
                "elasticsearch": {"url": es.url, "start": "earliest", "privacy": REPEATS["elasticsearch"]},
                "webhooks": [{"name": "SIEM", "url": webhook.endpoint, "secret": "${WEBHOOK_SECRET}", "start": "earliest", "privacy": REPEATS["webhook"]}],
            },
        }
        path = workdir / "audit_pipeline.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        for name in ("elasticsearch", "webhook:SIEM"):
            result = CliRunner().invoke(main, ["--config", str(path), "forward", name, "--once"], catch_exceptions=False)
            assert result.exit_code == 0, result.output
        stored = {doc_id: es.source(index, doc_id) for doc_id, index in es.documents().items()}
        hooked = {e["id"]: e for e in webhook.events}

    by_id = {e["id"]: received_form(e) for e in events}
    assert set(stored) == set(hooked) == set(by_id)
    for event_id, event in by_id.items():
        email, ip = event["actor_email"], event["ip_address"]
        # Elasticsearch: hashed e-mail and /24 network wherever they repeat, the rest of metadata as it was.
        view = expected_view(event, REPEATS["elasticsearch"])
        if email is not None and ip is not None:
            view["metadata"] = _scrubbed(event["metadata"], {email.casefold(): token(email), ip.casefold(): network(ip, 24, 48)})
        assert stored[event_id] == view, event_id
        # The webhook: both dropped, in metadata too; the dotted metadata_keys keep exactly those nested entries.
        view = expected_view({**event, "metadata": {}}, REPEATS["webhook"])
        kept = {k: event["metadata"][k] for k in ("reason", "actor") if k in event["metadata"]}
        if "client" in event["metadata"]:
            kept["client"] = {"ip": ip, "login": {"email": email}}
        view["metadata"] = _scrubbed(kept, {email.casefold(): None, ip.casefold(): None}) if email and ip else kept
        assert hooked[event_id] == view, event_id
        if "client" in event["metadata"]:
            assert hooked[event_id]["metadata"]["client"] == {"login": {}}  # what was left of the kept entries: no value
            assert "actor" not in hooked[event_id]["metadata"]
            assert stored[event_id]["metadata"]["client"]["agent"] == "curl/8.5"  # what repeats nothing is kept
    # Not one raw e-mail or address, in any case, in what either sink received.
    received = (b"\n".join(orjson.dumps(d) for d in stored.values()) + b"\n".join(orjson.dumps(e) for e in hooked.values())).decode().casefold()
    leaked = [e["actor_email"] for e in repeating if e["actor_email"].casefold() in received]
    leaked += [e["ip_address"] for e in repeating if f'"{e["ip_address"]}"' in received]
    assert not leaked, leaked[:3]


def test_dotted_metadata_keys_keep_exactly_those_nested_entries() -> None:
    event = {
        "id": "a1",
        "type": "user.login",
        "result": "success",
        "created_at": dt.datetime(2024, 1, 15, tzinfo=dt.UTC),
        # jsonb text, as PostgreSQL sends it: numeric 1.50 keeps its trailing zero
        "metadata": '{"flat": "f", "list": {"a": [1]}, "nested": {"other": 1, "email": "x@example.com", "deeper": {"m": 2, "n": 1.50}}, "reason": "r"}',
    }
    settings = PrivacySettings.model_validate({"metadata_keys": ["nested.email", "nested.deeper.n", "reason", "flat.x", "missing.key"]})
    out = PrivacyFilter(settings)(batch_of([event]).batch)
    assert json.loads(out.column(13)[0].as_py()) == {"nested": {"email": "x@example.com", "deeper": {"n": 1.5}}, "reason": "r"}
    assert out.column(13)[0].as_py() == '{"nested": {"email": "x@example.com", "deeper": {"n": 1.50}}, "reason": "r"}'  # every digit kept


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["nested..email"], "sinks.datadog.privacy.metadata_keys: 'nested..email' has an empty part"),
        ([".email"], "sinks.datadog.privacy.metadata_keys: '.email' has an empty part"),
        (["nested", "nested.email"], "sinks.datadog.privacy.metadata_keys: nested already keeps all of nested.email; list one of them"),
    ],
)
def test_unusable_metadata_keys_are_refused_at_load(workdir: Path, keys: list[str], message: str) -> None:
    config = {"sinks": {"datadog": {"api_key": "dd-key-0123456789", "privacy": {"metadata_keys": keys}}}}
    (workdir / "audit_pipeline.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as error:
        configured_sinks(load_settings(workdir / "audit_pipeline.yaml"))
    assert message in str(error.value)
