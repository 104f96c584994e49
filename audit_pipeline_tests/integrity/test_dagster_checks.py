"""The Dagster side: partitions sealed by the export asset, and the per-partition integrity checks."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import yaml

from audit_pipeline.core.layout import manifest_key
from audit_pipeline.defs.exports import EXPORT_ASSETS, day_check_results
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.integrity.manifest import Manifest
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.built_defs import definitions_for, export_assets
from audit_pipeline_tests.integrity.support import new_signer, write_private_key

D1, D2 = dt.date(2024, 2, 1), dt.date(2024, 2, 2)


@pytest.fixture
def configured(pg, workdir):
    signer = new_signer()
    key = write_private_key(signer, workdir / "manifest_key.pem")
    (workdir / "audit_pipeline.yaml").write_text(
        yaml.safe_dump({"source": {"database_url": pg.readonly_url}, "export": {"url": str(workdir / "exports")}, "integrity": {"private_key_file": str(key)}})
    )
    pg.insert(generate_events(D1, 150))
    pg.insert(generate_events(D2, 120))
    return pg, workdir / "exports", signer


def integrity_result(audit: AuditPipelineResource, fmt: str, day: dt.date) -> dg.AssetCheckResult:
    """The partition's integrity check, as the UI runs it alone."""
    return day_check_results(audit, day, [(fmt, "integrity")])[(fmt, "integrity")]


def _run(day: dt.date) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        export_assets(),
        selection=[*EXPORT_ASSETS.values()],
        partition_key=day.isoformat(),
        resources={"audit": AuditPipelineResource()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.asset_key.to_user_string().removeprefix("audit_logs_"): e for e in result.get_asset_check_evaluations() if e.check_name == "integrity"}


def test_integrity_checks_are_registered_per_export_asset():
    keys = {(k.asset_key, k.name) for k in definitions_for().resolve_asset_graph().asset_check_keys}
    assert {(key, "integrity") for key in EXPORT_ASSETS.values()} <= keys


@pytest.mark.slow
def test_materialized_partitions_are_sealed_and_checked(configured):
    _pg, exports, signer = configured
    for day in (D1, D2):
        result = _run(day)
        assert result.success
        checks = _checks(result)
        assert set(checks) == {"csv", "ndjson", "parquet"}
        for evaluation in checks.values():
            assert evaluation.passed and evaluation.partition == day.isoformat()
            assert evaluation.metadata["status"].value == "OK"
            assert evaluation.metadata["manifest"].value == manifest_key(day)
    manifest = Manifest.from_bytes((exports / manifest_key(D2)).read_bytes())
    assert manifest.signature is not None and manifest.signature.key_id == signer.key_id
    assert manifest.previous is not None and manifest.previous.day == D1

    # Tamper with the CSV of D2: the partition's check (as the UI would re-run it) names the problem.
    path = exports / f"csv/date={D2}/audit_logs.csv"
    path.write_bytes(path.read_bytes().replace(b"success", b"failure", 1))
    checks = {fmt: integrity_result(AuditPipelineResource(), fmt, D2) for fmt in EXPORT_ASSETS}
    assert not checks["csv"].passed and checks["csv"].severity == dg.AssetCheckSeverity.ERROR
    assert f"object modified: csv/date={D2}/audit_logs.csv" in (checks["csv"].description or "")
    assert checks["ndjson"].passed and checks["parquet"].passed
    # Re-materializing the day restores the published objects (the events did not change).
    assert all(e.passed for e in _checks(_run(D2)).values())
    # A removed manifest is an error for its own partition, and a (softer) broken link for the next one.
    (exports / manifest_key(D1)).unlink()
    own, following = integrity_result(AuditPipelineResource(), "ndjson", D1), integrity_result(AuditPipelineResource(), "ndjson", D2)
    assert not own.passed and own.severity == dg.AssetCheckSeverity.ERROR and "manifest missing" in (own.description or "")
    assert not following.passed and following.severity == dg.AssetCheckSeverity.WARN


def test_changed_day_fails_the_run_and_names_the_rechain(configured):
    pg, exports, _ = configured
    assert _run(D1).success
    published = {p: p.read_bytes() for p in exports.rglob("*") if p.is_file()}
    pg.insert(generate_events(D1, 2, seed=42))
    result = _run(D1)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    description = failure.step_failure_data.user_failure_data.description
    assert f"{D1} was already exported with different events" in description and f"audit-pipeline rechain --from {D1}" in description
    assert {p: p.read_bytes() for p in exports.rglob("*") if p.is_file()} == published


def test_missing_previous_day_is_a_warning(configured):
    pg, _exports, _ = configured
    assert _run(D1).success
    later = D2 + dt.timedelta(days=1)
    pg.insert(generate_events(later, 30))
    checks = _checks(_run(later))
    for evaluation in checks.values():
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
        assert f"{D2} has no manifest: a gap in the chain before this day" in (evaluation.description or "")
