"""The Elasticsearch sink against the stand-in: indices, template, item-by-item outcomes, errors."""

from __future__ import annotations

import datetime as dt

import pytest

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.sinks.base import Outcome, SinkFailure
from audit_pipeline.sinks.elasticsearch import ElasticsearchSink
from audit_pipeline.sinks.elasticsearch_bulk import TEMPLATE_VERSION, index_mappings
from audit_pipeline_tests.sinks.events import batch_of, synthetic
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

UTC = dt.UTC


def _sink(url: str, **extra) -> ElasticsearchSink:
    return ElasticsearchSink.from_config({"url": url, **extra})


def test_first_use_installs_the_index_template_once(es: ElasticsearchStandIn) -> None:
    sink = _sink(es.url)
    sink.prepare()
    sink.prepare()
    puts = [r for r in es.requests if r[0] == "PUT" and r[1] == "/_index_template/hellojohn-audit"]
    assert len(puts) == 1
    template = es.templates["hellojohn-audit"]
    assert template["index_patterns"] == ["hellojohn-audit-*"] and template["version"] == TEMPLATE_VERSION
    assert template["template"]["mappings"] == index_mappings()
    properties = template["template"]["mappings"]["properties"]
    assert properties["id"]["type"] == "keyword" and properties["created_at"]["type"] == "date_nanos"
    assert properties["ip_address"]["type"] == "ip" and properties["metadata"]["type"] == "flattened"
    es.templates["hellojohn-audit"]["version"] = TEMPLATE_VERSION - 1  # an older release's template is replaced
    _sink(es.url).prepare()
    assert es.templates["hellojohn-audit"]["version"] == TEMPLATE_VERSION


def test_each_event_goes_to_the_index_of_its_utc_day_as_exported(es: ElasticsearchStandIn) -> None:
    events = synthetic(4)
    events[0]["created_at"] = dt.datetime(2024, 1, 15, 23, 59, 59, 999999, tzinfo=UTC)
    events[1]["created_at"] = dt.datetime(2024, 1, 16, 0, 0, tzinfo=UTC)
    events[2]["created_at"] = dt.datetime(2024, 1, 16, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # 2024-01-15 22:30 UTC
    events[3]["ip_address"] = "10.0.0.0/24"  # an inet with a netmask: kept, not refused
    batch = batch_of(events)
    sink = _sink(es.url)
    sink.prepare()
    report = sink.send(batch)
    assert report.outcomes == [Outcome.DELIVERED] * 4
    assert es.documents() == {
        events[0]["id"]: "hellojohn-audit-2024.01.15",
        events[1]["id"]: "hellojohn-audit-2024.01.16",
        events[2]["id"]: "hellojohn-audit-2024.01.15",
        events[3]["id"]: f"hellojohn-audit-{events[3]['created_at']:%Y.%m.%d}",
    }
    for i, event in enumerate(events):
        index = es.documents()[event["id"]]
        assert es.indices[index]["docs"][event["id"]] == batch.line(i)  # the exported line, byte for byte
    bulk = [r for r in es.requests if r[1] == "/_bulk"]
    assert bulk and all(method == "PUT" for method, _, _ in bulk)


def test_the_index_pattern_is_configurable(es: ElasticsearchStandIn) -> None:
    events = synthetic(2)
    sink = _sink(es.url, index="audit-%Y-%m", template_name="audit-monthly")
    sink.prepare()
    assert sink.send(batch_of(events)).outcomes == [Outcome.DELIVERED] * 2
    assert set(es.documents().values()) == {"audit-2024-01"}
    assert es.templates["audit-monthly"]["index_patterns"] == ["audit-*"]


def test_a_replayed_batch_is_delivered_without_duplicates(es: ElasticsearchStandIn) -> None:
    batch = batch_of(synthetic(50))
    sink = _sink(es.url)
    sink.prepare()
    assert sink.send(batch).outcomes == [Outcome.DELIVERED] * 50
    assert sink.send(batch).outcomes == [Outcome.DELIVERED] * 50  # every item 409: already there
    assert es.conflicts == 50 and not es.duplicates() and len(es.documents()) == 50


def test_items_are_read_one_by_one(es: ElasticsearchStandIn) -> None:
    events = synthetic(10)
    es.throttle_ids({events[2]["id"]}, times=1)
    es.reject_ids({events[7]["id"]})
    sink = _sink(es.url)
    sink.prepare()
    report = sink.send(batch_of(events))
    assert report.indices(Outcome.RETRY) == [2]
    assert report.indices(Outcome.REJECTED) == [7]
    assert "429 es_rejected_execution_exception" in report.reasons[2]
    assert report.reasons[7].startswith("400 document_parsing_exception")
    assert len(report.indices(Outcome.DELIVERED)) == 8


def test_without_our_template_a_netmask_is_a_mapping_rejection(es: ElasticsearchStandIn) -> None:
    es.templates["strict"] = {
        "index_patterns": ["hellojohn-audit-*"],
        "priority": 500,
        "template": {"mappings": {"properties": {"ip_address": {"type": "ip"}}}},
    }
    events = synthetic(2)
    events[1]["ip_address"] = "10.0.0.0/24"
    sink = _sink(es.url)
    sink.prepare()
    report = sink.send(batch_of(events))
    assert report.outcomes == [Outcome.DELIVERED, Outcome.REJECTED]
    assert "failed to parse field [ip_address] of type [ip]" in report.reasons[1]


def test_request_level_failures_are_retried(es: ElasticsearchStandIn) -> None:
    events = synthetic(5)
    sink = _sink(es.url)
    sink.prepare()
    es.outage(30)
    report = sink.send(batch_of(events))
    assert report.outcomes == [Outcome.RETRY] * 5 and "503" in report.reasons[0]
    es.outage(0)
    es.drop_connections(1)  # applied, then the connection is cut before the answer
    report = sink.send(batch_of(events))
    assert report.outcomes == [Outcome.RETRY] * 5
    assert sink.send(batch_of(events)).outcomes == [Outcome.DELIVERED] * 5  # 409s
    assert not es.duplicates() and len(es.documents()) == 5


def test_refused_credentials_name_the_setting_and_never_the_secret() -> None:
    with ElasticsearchStandIn(api_key="the-right-key") as es:
        sink = _sink(es.url, api_key="s3cr3t-Wrong-Key")
        with pytest.raises(SinkFailure) as caught:
            sink.prepare()
        assert "401" in str(caught.value) and "sinks.elasticsearch.api_key" in str(caught.value)
        assert "s3cr3t" not in str(caught.value) and "s3cr3t" not in repr(sink.settings)
        assert _sink(es.url, api_key="the-right-key").send(batch_of(synthetic(1))).outcomes == [Outcome.DELIVERED]
    with ElasticsearchStandIn(basic_auth=("elastic", "pw-123")) as es:
        _sink(es.url, username="elastic", password="pw-123").prepare()


def test_a_server_of_another_major_version_is_refused_with_the_rule() -> None:
    with ElasticsearchStandIn(version="8.15.3") as es, pytest.raises(SinkFailure) as caught:
        _sink(es.url).prepare()
    assert "major version must match the server's" in str(caught.value) and "supports Elasticsearch 9.x" in str(caught.value)


def test_a_server_that_is_not_elasticsearch_is_refused() -> None:
    with ElasticsearchStandIn(product_header=False) as es, pytest.raises(SinkFailure, match="not Elasticsearch"):
        _sink(es.url).prepare()


def test_a_cluster_that_does_not_create_indices_is_a_clear_failure() -> None:
    with ElasticsearchStandIn(auto_create_index=False) as es:
        sink = _sink(es.url)
        sink.prepare()
        with pytest.raises(SinkFailure, match=r"auto_create_index.*hellojohn-audit-\*"):
            sink.send(batch_of(synthetic(2)))


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"url": "http://es:9200", "index": "Audit-%Y"}, "sinks.elasticsearch.index"),
        ({"url": "http://elastic:pw@es:9200"}, "must not contain credentials"),
        ({"url": "es:9200"}, "must be http(s)://host:port"),
        ({"url": "http://es:9200", "api_key": "k", "username": "u", "password": "p"}, "either api_key or username/password"),
        ({"url": "http://es:9200", "username": "u"}, "username and password go together"),
        ({"url": "http://es:9200", "batch_size": 10}, "sinks.elasticsearch.batch_size: unknown key"),
        ({}, "sinks.elasticsearch.url: is required"),
    ],
)
def test_bad_settings_are_errors_naming_the_key(section, message) -> None:
    with pytest.raises(ConfigError) as caught:
        ElasticsearchSink.from_config(section)
    assert message in str(caught.value)
    assert "pw" not in str(caught.value).replace("password", "")


@pytest.mark.parametrize("pattern", ["hellojohn-audit-%Y.%m.%d", "audit-%y%j", "audit-%Y-%m", "audit-%Y.%m.%d-%H"])
def test_index_names_match_strftime_of_each_utc_timestamp(pattern) -> None:
    import random

    import pyarrow as pa
    import pyarrow.compute as pc

    from audit_pipeline.sinks.elasticsearch_bulk import index_names

    rng = random.Random(3)
    values = sorted(rng.randrange(-86_400_000_000, 4_000_000_000_000_000) for _ in range(2_000))
    values += [86_400_000_000 * 19_737 - 1, 86_400_000_000 * 19_737]  # the last and first microsecond of two days
    column = pa.array(values, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    assert index_names(column, pattern).to_pylist() == pc.strftime(column, format=pattern).to_pylist()
