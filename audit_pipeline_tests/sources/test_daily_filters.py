"""``export.filter`` on the daily assets: applied at the source, recorded, and counted the same way by the check.

Also the daily assets, unchanged, on the HelloJohn API source.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from audit_pipeline.config.settings import load_settings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.built_defs import export_assets
from audit_pipeline_tests.helpers import read_csv_rows
from audit_pipeline_tests.standins.hellojohn_api import DEFAULT_KEY, serve_hellojohn_api

DAY = dt.date(2024, 1, 15)


def _materialize() -> dg.ExecuteInProcessResult:
    return dg.materialize(
        export_assets(),
        partition_key=DAY.isoformat(),
        resources={"audit": AuditPipelineResource()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    return {e.asset_key.to_user_string(): e.materialization for e in result.get_asset_materialization_events()}


def test_filtered_daily_export_holds_the_matching_rows_and_says_it_is_filtered(pg, workdir: Path):
    pg.insert(generate_events(DAY, 1_500))
    pg.insert([{"id": "under_score", "type": "user_login", "tenant_id": "ten_0002", "created_at": "2024-01-15 10:00:00+00"}])
    (workdir / "audit_pipeline.yaml").write_text(
        f"source:\n  database_url: {pg.readonly_url}\n"
        f"export:\n  url: {workdir / 'exports'}\n"
        "  filter:\n    include_types: ['user.*', 'org.member_*']\n    exclude_types: ['*_failed']\n    exclude_tenants: ['ten_0001', 'ten_001?']\n"
    )
    expected = [
        r[0]
        for r in pg.fetch(
            "SELECT id FROM audit_logs WHERE created_at >= '2024-01-15Z' AND created_at < '2024-01-16Z'"
            " AND (starts_with(type, 'user.') OR starts_with(type, 'org.member_')) AND right(type, 7) <> '_failed'"
            " AND tenant_id <> 'ten_0001' AND NOT (starts_with(tenant_id, 'ten_001') AND length(tenant_id) = 8)"
            ' ORDER BY created_at, id COLLATE "C"'
        )
    ]
    assert 100 < len(expected) < 1_000 and "under_score" not in expected  # '_' in a pattern is no wildcard

    result = _materialize()
    assert result.success
    for name, materialization in _materializations(result).items():
        meta = materialization.metadata
        assert meta["filtered"].value is True, name
        assert meta["filter"].value == {
            "include_types": ["user.*", "org.member_*"],
            "exclude_types": ["*_failed"],
            "exclude_tenants": ["ten_0001", "ten_001?"],
        }
        assert meta["dagster/row_count"].value == len(expected)
    rows = read_csv_rows((workdir / "exports/csv/date=2024-01-15/audit_logs.csv").read_bytes())
    assert [r["id"] for r in rows] == expected
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 9 and all(c.passed for c in checks)
    complete = next(c for c in checks if c.check_name == "complete")
    assert complete.metadata["source_rows"].value == len(expected)  # counted with the same filter


def test_an_unfiltered_export_carries_no_filter(pg, workdir: Path):
    pg.insert(generate_events(DAY, 200))
    (workdir / "audit_pipeline.yaml").write_text(f"source:\n  database_url: {pg.readonly_url}\nexport:\n  url: {workdir / 'exports'}\n")
    result = _materialize()
    assert result.success
    for materialization in _materializations(result).values():
        assert materialization.metadata["filtered"].value is False
        assert "filter" not in materialization.metadata
        assert materialization.metadata["dagster/row_count"].value == 200


@pytest.mark.parametrize(
    ("filter_yaml", "message"),
    [
        ("include_types: ['user.[ab]*']", r"export.filter.include_types: .*'user.\[ab\]\*': character classes"),
        ("exclude_tenants: ['']", r"export.filter.exclude_tenants: .*cannot be empty"),
        ("include_types: user.*", r"export.filter.include_types: .*tuple"),
        ("include_type: ['user.*']", r"export.filter.include_type: unknown key"),
    ],
)
def test_a_bad_filter_names_the_key(workdir: Path, filter_yaml: str, message: str):
    (workdir / "audit_pipeline.yaml").write_text(f"export:\n  filter:\n    {filter_yaml}\n")
    with pytest.raises(ConfigError, match=message):
        load_settings()


@pytest.mark.parametrize("api_read", ["export", "list"])
def test_daily_assets_and_checks_run_unchanged_on_the_hellojohn_api(pg, workdir: Path, monkeypatch, api_read: str):
    pg.insert(generate_events(DAY, 700))
    pg.insert(generate_events(DAY + dt.timedelta(days=1), 30))
    with serve_hellojohn_api(pg.url, rate_limit_every=6, retry_after=0) as api:
        (workdir / "audit_pipeline.yaml").write_text(
            f"source:\n  type: hellojohn_api\n  base_url: {api.base_url}\n  secret_key: ${{HJ_SECRET_KEY}}\n  api_read: {api_read}\n"
            f"export:\n  url: {workdir / 'exports'}\n  filter:\n    include_types: ['user.login']\n"
        )
        monkeypatch.setenv("HJ_SECRET_KEY", DEFAULT_KEY)
        result = _materialize()
    assert result.success
    logins = pg.fetch("SELECT count(*) FROM audit_logs WHERE type = 'user.login' AND created_at >= '2024-01-15Z' AND created_at < '2024-01-16Z'")[0][0]
    for materialization in _materializations(result).values():
        meta = materialization.metadata
        assert meta["source"].value == f"HelloJohn API {api.base_url}"
        assert meta["dagster/row_count"].value == logins > 0
        assert DEFAULT_KEY not in str(meta)
    assert all(c.passed for c in result.get_asset_check_evaluations())
    reads = [r for r in api.requests if r.params["from"] == "2024-01-15T00:00:00Z"]  # not check()'s probe
    # The day in one request (the stream ends at the next day's first event; the 45 logins fit one page of the list);
    # the one check pass counts the day again through the other endpoint, never from the read that published it.
    export, listed = ("/v1/audit-logs/export", 200), ("/v1/audit-logs", 200)
    assert [(r.path, r.status) for r in reads] == ([export, listed] if api_read == "export" else [listed, export])
    [counted] = {c.metadata["count_method"].value for c in result.get_asset_check_evaluations() if c.check_name == "complete"}
    assert counted.endswith(f"independent of the {api_read} read that published the day")
    if api_read == "list":
        assert reads[0].params.get("type") == "user.login"  # an exact type is filtered by the list endpoint
