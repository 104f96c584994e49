"""Export responses that end *cleanly* short of the range: a server-side cap of any size, an empty 200,
a response stopped mid-range with its last chunk and gzip trailer sent.  Nothing in such a response
says it is short, so no count of events may be taken as proof: the day is read exactly, or refused,
never published short.  And the ``complete`` check counts the day through the other endpoint, so a
short read is never compared with itself.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.exports.day import export_day
from audit_pipeline.sources.hellojohn_api import HelloJohnApiSource
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.built_defs import export_assets
from audit_pipeline_tests.standins.hellojohn_api import DEFAULT_KEY, serve_hellojohn_api
from benchmarks.synthetic_sql import generate_sql

DAY = dt.date(2024, 1, 15)
EXPORT = "/v1/audit-logs/export"


def _day(pg, events: int, same_timestamp: int) -> None:
    """``events`` events of the day, ``same_timestamp`` sharing each instant, so that responses stop among ties."""
    with pg.connect() as conn:
        conn.execute(generate_sql(events, same_timestamp=same_timestamp))


def _exported(pg, tmp_path: Path, api_base_url: str) -> tuple[ObjectStore, ObjectStore, int]:
    """The day through the API and from PostgreSQL: both stores and the API export's row count."""
    options = ExportSettings(parquet_row_group_rows=1_000)
    from_pg, from_api = ObjectStore(str(tmp_path / "pg")), ObjectStore(str(tmp_path / "api"))
    with PostgresSource(pg.readonly_url, batch_rows=1_000) as source:
        export_day(source, from_pg, DAY, options)
    with HelloJohnApiSource(api_base_url, DEFAULT_KEY, sleep=lambda s: None) as source:
        rows = export_day(source, from_api, DAY, options).rows
    return from_pg, from_api, rows


def _assert_same_files(from_pg: ObjectStore, from_api: ObjectStore) -> None:
    keys = from_pg.list("")
    assert len(keys) == 3 and from_api.list("") == keys
    for key in keys:
        assert from_api.read_bytes(key) == from_pg.read_bytes(key), key


@pytest.mark.parametrize(("cap", "events"), [(1, 40), (250, 5_555), (777, 5_555), (1_234, 5_555)])
def test_a_server_that_stops_every_response_cleanly_after_n_events_gives_the_whole_day(pg, tmp_path: Path, cap: int, events: int):
    """None of these counts is a round number or the configured cap (100,000): each response looks whole."""
    _day(pg, events, same_timestamp=3)
    with serve_hellojohn_api(pg.url, export_row_cap=cap) as api:
        from_pg, from_api, rows = _exported(pg, tmp_path, api.base_url)
    assert rows == events
    _assert_same_files(from_pg, from_api)
    answers = [r.rows for r in api.export_requests[1:]]  # after the source check's probe
    assert max(answers) == cap and answers[-1] == 0  # the read ended on an answer that brought nothing


def test_an_empty_200_for_a_day_with_events_is_asked_again(pg, tmp_path: Path):
    _day(pg, 5_555, same_timestamp=1)
    with serve_hellojohn_api(pg.url, export_empty_at={2}) as api:  # request 1: the source check's probe
        from_pg, from_api, rows = _exported(pg, tmp_path, api.base_url)
    assert rows == 5_555
    _assert_same_files(from_pg, from_api)
    assert [r.rows for r in api.export_requests[1:3]] == [0, 5_555]


def test_a_truly_empty_day_is_confirmed_by_a_second_empty_answer(pg, tmp_path: Path):
    with serve_hellojohn_api(pg.url) as api:
        _, from_api, rows = _exported(pg, tmp_path, api.base_url)
    assert rows == 0 and len(from_api.list("")) == 3
    assert [(r.params["from"], r.rows) for r in api.export_requests[1:]] == [("2024-01-15T00:00:00Z", 0)] * 2


@pytest.mark.parametrize("gzip", [True, False])
def test_a_response_that_ends_cleanly_mid_range_is_followed_up(pg, tmp_path: Path, gzip: bool):
    _day(pg, 5_555, same_timestamp=2)
    with serve_hellojohn_api(pg.url, export_stop_after={2: 1_234}, export_gzip=gzip) as api:
        from_pg, from_api, rows = _exported(pg, tmp_path, api.base_url)
    assert rows == 5_555
    _assert_same_files(from_pg, from_api)
    assert api.export_requests[1].rows == 1_234  # after the source check's probe


def test_the_complete_check_counts_through_the_list_and_refuses_a_day_the_export_endpoint_hid(pg, workdir: Path, monkeypatch):
    """An export endpoint that answers every request with an empty 200: the stream alone cannot tell this from
    an empty day, so the export publishes 0 events; the ``complete`` check, counting through the list, fails."""
    _day(pg, 5_555, same_timestamp=1)
    monkeypatch.setenv("HJ_SECRET_KEY", DEFAULT_KEY)
    with serve_hellojohn_api(pg.url, export_empty_at=set(range(1, 1_000))) as api:
        (workdir / "audit_pipeline.yaml").write_text(
            f"source:\n  type: hellojohn_api\n  base_url: {api.base_url}\n  secret_key: ${{HJ_SECRET_KEY}}\nexport:\n  url: {workdir / 'exports'}\n"
        )
        result = dg.materialize(
            export_assets(source_type="hellojohn_api"),
            partition_key=DAY.isoformat(),
            resources={"audit": AuditPipelineResource()},
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    complete = [c for c in result.get_asset_check_evaluations() if c.check_name == "complete"]
    assert len(complete) == 3 and not any(c.passed for c in complete)
    for check in complete:
        assert check.description is not None and "\n" not in check.description
        assert "holds 0 rows but the source has 5555 for 2024-01-15: re-materialize the partition" in check.description
        assert check.metadata["count_method"].value.startswith("paged list of the range read and counted (28 requests of up to 200 events)")
