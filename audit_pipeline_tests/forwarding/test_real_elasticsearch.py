"""The same checks against the stand-in and, when ``AUDIT_TEST_ELASTICSEARCH_URL`` is set, a real Elasticsearch.

Optional: ``AUDIT_TEST_ELASTICSEARCH_API_KEY`` or ``AUDIT_TEST_ELASTICSEARCH_USERNAME`` /
``AUDIT_TEST_ELASTICSEARCH_PASSWORD``, ``AUDIT_TEST_ELASTICSEARCH_CA_CERTS``.  The test writes to
indices named ``audit-test-<random>-*`` and deletes them and its template afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from audit_pipeline.sinks.base import Outcome
from audit_pipeline.sinks.elasticsearch import ElasticsearchSink
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.forwarding.conftest import make_forwarder
from audit_pipeline_tests.sinks.events import batch_of
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

REAL_URL = os.environ.get("AUDIT_TEST_ELASTICSEARCH_URL")


@pytest.fixture(params=["standin", "real"])
def cluster(request) -> Iterator[dict[str, Any]]:
    if request.param == "standin":
        with ElasticsearchStandIn() as standin:
            yield {"url": standin.url}
        return
    if not REAL_URL:
        pytest.skip("set AUDIT_TEST_ELASTICSEARCH_URL to run against a real Elasticsearch")
    settings: dict[str, Any] = {"url": REAL_URL}
    for key in ("api_key", "username", "password", "ca_certs"):
        value = os.environ.get(f"AUDIT_TEST_ELASTICSEARCH_{key.upper()}")
        if value:
            settings[key] = value
    yield settings


def test_forwarded_events_are_searchable_once_each(cluster: dict[str, Any], pg: PgDatabase, tmp_path) -> None:
    run = uuid.uuid4().hex[:8]
    settings = {**cluster, "index": f"audit-test-{run}-%Y.%m.%d", "template_name": f"audit-test-{run}"}
    events = list(generate_events(dt.date(2024, 1, 15), 150)) + list(generate_events(dt.date(2024, 1, 16), 50))
    events[7]["ip_address"] = "10.0.0.0/24"
    pg.insert(events)
    sink = ElasticsearchSink.from_config(settings)
    client = sink.client
    try:
        forwarder = make_forwarder(pg.url, sink, tmp_path)
        with forwarder.leased():
            result = forwarder.run_pass()
        assert result.complete and result.delivered == 200, result.stopped
        assert sink.send(batch_of(events[:20])).outcomes == [Outcome.DELIVERED] * 20  # replay: 409s
        client.indices.refresh(index=f"audit-test-{run}-*")
        assert client.count(index=f"audit-test-{run}-2024.01.15")["count"] == 150
        assert client.count(index=f"audit-test-{run}-*")["count"] == 200
        doc = client.get(index=f"audit-test-{run}-2024.01.15", id=events[7]["id"])
        assert doc["_source"]["ip_address"] == "10.0.0.0/24" and doc["_source"]["actor_email"] == events[7]["actor_email"]
    finally:
        # named, not a wildcard: clusters refuse wildcard deletes (action.destructive_requires_name)
        client.options(ignore_status=404).indices.delete(index=f"audit-test-{run}-2024.01.15,audit-test-{run}-2024.01.16")
        client.options(ignore_status=404).indices.delete_index_template(name=f"audit-test-{run}")
        sink.close()
