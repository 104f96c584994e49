"""The Dagster layer: partitioned export assets, their checks, the schedule, the documented command."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from audit_pipeline.defs.exports import EXPORT_ASSETS
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.exports.readback import check_completeness, check_schema
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.built_defs import definitions_for, export_assets, export_definitions

DAY = dt.date(2024, 1, 15)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def configured(pg, workdir, monkeypatch):
    # trust auth ignores the password; it is here to prove it never reaches metadata or logs
    monkeypatch.setenv("AUDIT_DATABASE_URL", pg.readonly_url.replace("_ro@", "_ro:pw-s3cret-XYZ@"))
    monkeypatch.setenv("AUDIT_EXPORT_URL", str(workdir / "exports"))
    return pg, workdir / "exports"


def _materialize(day: dt.date, selection=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        export_assets(),
        selection=selection,
        partition_key=day.isoformat(),
        resources={"audit": AuditPipelineResource()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_definitions_load_with_exact_asset_keys():
    defs = definitions_for()
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"audit_logs_csv", "audit_logs_ndjson", "audit_logs_parquet", "audit_logs"} <= keys
    assert defs.resolve_job_def("daily_export_job") is not None
    check_keys = {(c.asset_key.to_user_string(), c.name) for c in repo.asset_graph.asset_check_keys}
    for key in ("audit_logs_csv", "audit_logs_ndjson", "audit_logs_parquet"):
        assert {(key, "complete"), (key, "schema"), (key, "integrity")} <= check_keys


def test_materialize_partition_records_metadata_and_passes_checks(configured):
    pg, exports = configured
    pg.insert(generate_events(DAY, 1_200))
    pg.insert(generate_events(DAY - dt.timedelta(days=1), 50))
    result = _materialize(DAY)
    assert result.success
    materializations = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    assert set(materializations) == {"audit_logs_csv", "audit_logs_ndjson", "audit_logs_parquet"}
    for name, event in materializations.items():
        meta = event.materialization.metadata
        assert event.materialization.partition == "2024-01-15"
        assert meta["dagster/row_count"].value == 1_200
        assert meta["bytes"].value > 0
        assert len(meta["sha256"].value) == 64
        assert meta["dagster/uri"].value.startswith(f"file://{exports}")
        assert meta["min_created_at"].value.startswith("2024-01-15T")
        assert meta["dagster/column_schema"].schema.columns[0].name == "id"
        assert "pw-s3cret-XYZ" not in str(meta)
        fmt = name.removeprefix("audit_logs_")
        assert (exports / f"{fmt}/date=2024-01-15").is_dir()
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 9 and all(c.passed for c in checks), [c.description for c in checks if not c.passed]
    complete = next(c for c in checks if c.asset_key == EXPORT_ASSETS["csv"] and c.check_name == "complete")
    assert complete.metadata["source_rows"].value == 1_200


def test_completeness_check_fails_when_an_object_is_short(configured):
    pg, exports = configured
    pg.insert(generate_events(DAY, 100))
    assert _materialize(DAY).success
    path = exports / "ndjson/date=2024-01-15/audit_logs.ndjson"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))
    store = AuditPipelineResource().object_store()
    check = check_completeness(store, "ndjson", DAY, expected_rows=100)
    assert not check.passed
    assert check.metadata["exported_rows"] == 99
    assert "holds 99 rows but the source has 100" in (check.description or "")
    assert check_completeness(store, "csv", DAY, expected_rows=100).passed
    path.unlink()
    assert "no ndjson object" in (check_completeness(store, "ndjson", DAY, 100).description or "")
    (exports / "csv/date=2024-01-15/audit_logs.csv").write_bytes(b"id,type\r\n")
    schema = check_schema(store, "csv", DAY)
    assert not schema.passed and "header is" in (schema.description or "")


def test_failed_run_names_the_setting(pg, workdir, monkeypatch):
    monkeypatch.setenv("AUDIT_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    monkeypatch.setenv("AUDIT_EXPORT_URL", str(workdir / "exports"))
    result = _materialize(DAY)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "cannot connect to the audit database" in failure.step_failure_data.user_failure_data.description
    assert "AUDIT_DATABASE_URL" in failure.step_failure_data.user_failure_data.description
    assert not (workdir / "exports" / "csv").exists()


def test_schedule_targets_the_day_that_just_closed():
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2024, 5, 20, 0, 30, tzinfo=dt.UTC))
    built = export_definitions()
    schedule = definitions_for().resolve_schedule_def(built.schedule.name)
    requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert [r.partition_key for r in requests] == ["2024-05-19"]
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


@pytest.mark.slow
def test_documented_materialize_command(pg, tmp_path):
    """`dagster asset materialize ...` (superseded by the documented `dg launch`, and still working) from the repo root, with only AUDIT_* settings."""
    pg.insert(generate_events(DAY, 400))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_"))}
    # A DAGSTER_HOME of its own: the run of this throwaway database must not land in the checkout's .dagster_home.
    (tmp_path / "dagster_home").mkdir()
    env.update(AUDIT_DATABASE_URL=pg.readonly_url, AUDIT_EXPORT_URL=str(tmp_path / "out"), DAGSTER_HOME=str(tmp_path / "dagster_home"))
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "-m",
        "audit_pipeline.definitions",
        "--select",
        "audit_logs_csv,audit_logs_ndjson,audit_logs_parquet",
        "--partition",
        "2024-01-15",
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stderr + done.stdout
    assert (tmp_path / "out/parquet/date=2024-01-15/audit_logs.parquet").exists()
    assert (tmp_path / "out/csv/date=2024-01-15/audit_logs.csv").read_bytes().count(b"\r\n") >= 401
