"""Index retention: exactly the expired daily indices of the sink's pattern are deleted, nothing else.

Runs against the Elasticsearch stand-in; set ``AUDIT_TEST_ELASTICSEARCH_URL`` (e.g.
``http://localhost:9200``, security off or ``AUDIT_TEST_ELASTICSEARCH_API_KEY``) to run the
same test against a real cluster; it only touches indices named ``audit-retention-<random>-*``.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from audit_pipeline.core.errors import AuditPipelineError
from audit_pipeline.retention.elasticsearch import DailyIndex, IndexRetention, elasticsearch_sink
from audit_pipeline.retention.run import run_retention
from audit_pipeline_tests.retention.support import settings_for
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

TODAY = dt.date(2024, 5, 20)
# The tests take `workdir`, not `tmp_path`: with no database the source is the demo one, whose SQLite file
# lives under ./.audit_pipeline/ of the current directory (retention reads its clock), so they run in tmp_path.


@pytest.fixture(params=["standin", "real"])
def cluster(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The sink section for a cluster, and a client to seed and inspect it."""
    if request.param == "standin":
        with ElasticsearchStandIn() as standin:
            yield {"url": standin.url, "prefix": "hellojohn-audit-", "client": Elasticsearch(standin.url)}
        return
    url = os.environ.get("AUDIT_TEST_ELASTICSEARCH_URL")
    if not url:
        pytest.skip("set AUDIT_TEST_ELASTICSEARCH_URL to run against a real Elasticsearch")
    api_key = os.environ.get("AUDIT_TEST_ELASTICSEARCH_API_KEY")
    client = Elasticsearch(url, api_key=api_key) if api_key else Elasticsearch(url)
    prefix = f"audit-retention-{uuid.uuid4().hex[:8]}-"
    yield {"url": url, "prefix": prefix, "client": client, "api_key": api_key}
    client.options(ignore_status=404).indices.delete(index=",".join(r["index"] for r in client.cat.indices(index=prefix + "*", format="json")) or prefix + "x")


def _seed(client: Elasticsearch, names: dict[str, int]) -> None:
    operations: list[dict[str, Any]] = []
    for name, docs in names.items():
        for i in range(docs):
            operations += [{"create": {"_index": name, "_id": f"{name}-{i}"}}, {"id": f"{name}-{i}", "type": "user.login"}]
    client.bulk(operations=operations, refresh=True)


def _names(client: Elasticsearch, prefix: str) -> set[str]:
    return {r["index"] for r in client.cat.indices(index=prefix + "*", format="json")}


def test_only_expired_daily_indices_of_the_pattern_go(cluster: dict[str, Any], workdir: Path) -> None:
    client, prefix = cluster["client"], cluster["prefix"]
    days = [dt.date(2024, 3, 1) + dt.timedelta(days=i) for i in range(80)]  # 2024-03-01 .. 2024-05-19
    daily = {f"{prefix}{d:%Y.%m.%d}": 1 + i % 3 for i, d in enumerate(days)}
    foreign = {
        f"{prefix}old": 2,  # matches the template's wildcard, but is no day
        f"{prefix}2024.03.01-restored": 1,
        f"{prefix}2024.3.02": 1,
        f"other-{prefix}2024.03.01": 1,
    }
    _seed(client, {**daily, **foreign})
    sink = {"url": cluster["url"], "index": prefix + "%Y.%m.%d", **({"api_key": cluster["api_key"]} if cluster.get("api_key") else {})}
    settings = settings_for(workdir, None, {"elasticsearch": "30d"}, sinks={"elasticsearch": sink})
    expired = {name for name, d in zip(daily, days, strict=True) if d < dt.date(2024, 4, 20)}  # 30d on 2024-05-20: kept from 2024-04-20

    dry = run_retention(settings, today=TODAY, dry_run=True)
    assert dry.plan is not None and {i.name for i in dry.plan.indices} == expired
    assert _names(client, prefix) >= set(daily)  # nothing deleted yet

    real = run_retention(settings, today=TODAY)
    assert real.figures() == dry.figures()
    assert real.figures().indices == len(expired) == 50
    assert real.figures().index_documents == sum(daily[n] for n in expired)
    left = _names(client, prefix) | {r["index"] for r in client.cat.indices(index=f"other-{prefix}*", format="json")}
    assert left == (set(daily) - expired) | set(foreign)

    again = run_retention(settings, today=TODAY)
    assert again.figures().indices == 0 and again.plan is not None and again.plan.indices == []


def test_deletes_by_exact_name_and_tolerates_an_index_already_gone(workdir: Path) -> None:
    with ElasticsearchStandIn() as standin:
        client = Elasticsearch(standin.url)
        _seed(client, {"hellojohn-audit-2024.01.01": 1})
        # The cluster refuses wildcard deletes (action.destructive_requires_name), so a pattern could never slip through.
        assert client.options(ignore_status=400).indices.delete(index="hellojohn-audit-*").meta.status == 400
        settings = settings_for(workdir, None, {"elasticsearch": "30d"}, sinks={"elasticsearch": {"url": standin.url}})
        retention = IndexRetention(elasticsearch_sink(settings))
        try:
            assert retention.delete(DailyIndex("hellojohn-audit-2024.01.01", dt.date(2024, 1, 1), 1)) is True
            assert retention.delete(DailyIndex("hellojohn-audit-2024.01.01", dt.date(2024, 1, 1), 1)) is False  # already gone
            with pytest.raises(AuditPipelineError, match="refusing to delete 'hellojohn-audit-\\*'"):
                retention.delete(DailyIndex("hellojohn-audit-*", dt.date(2024, 1, 1), 0))
        finally:
            retention.close()
        assert [m for m, p, _ in standin.requests if m == "DELETE"] == ["DELETE", "DELETE", "DELETE"]  # no request for the refused name


def test_refused_credentials_name_the_privileges(workdir: Path) -> None:
    with ElasticsearchStandIn(api_key="right") as standin:
        sinks = {"elasticsearch": {"url": standin.url, "api_key": "wrong-key-value"}}
        settings = settings_for(workdir, None, {"elasticsearch": "30d"}, sinks=sinks)
        with pytest.raises(AuditPipelineError) as caught:
            run_retention(settings, today=TODAY, dry_run=True)
    message = str(caught.value)
    assert "refused listing indices hellojohn-audit-* (401)" in message and "monitor and delete_index privileges" in message
    assert "wrong-key-value" not in message
