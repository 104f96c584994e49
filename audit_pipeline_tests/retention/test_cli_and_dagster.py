"""``audit-pipeline retention`` and the Dagster job + schedule: same core, same figures, clear errors."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import dagster as dg
import yaml
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.defs.retention import retention_job, retention_schedule
from audit_pipeline_tests.built_defs import definitions_for
from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.retention.support import day_range, export_days, fill_days, rows_per_day, settings_for

D = dt.date


def _setup(pg: PgDatabase, tmp_path: Path, **retention) -> Path:
    fill_days(pg, D(2024, 1, 1), D(2024, 1, 6))
    settings = settings_for(tmp_path, pg, {"database": "30d", "exports": {"csv": "30d", "parquet": "unlimited"}, **retention})
    export_days(settings, day_range(D(2024, 1, 1), D(2024, 1, 4)))  # 5 and 6 are not exported
    return tmp_path / "audit_pipeline.yaml"


def _numbers(line: str) -> list[str]:
    return re.findall(r"\d[\d,]*", line)


def test_dry_run_lists_exactly_what_the_real_run_deletes(pg: PgDatabase, tmp_path: Path) -> None:
    config = _setup(pg, tmp_path)
    runner = CliRunner()
    dry = runner.invoke(main, ["--config", str(config), "retention", "--dry-run", "--today", "2024-05-20"])
    assert dry.exit_code == 0, dry.output
    assert "  2024-01-01  DELETE          3 rows  exports verified" in dry.output
    assert "  2024-01-05  KEEP            3 rows  not exported: no manifest and no objects (materialize partition 2024-01-05)" in dry.output
    assert "  2024-01-01  DELETE csv/date=2024-01-01/audit_logs.csv" in dry.output
    summary = dry.output.strip().splitlines()[-1]
    assert summary.startswith("would delete: 12 rows of 4 day(s) from the database (kept 6 rows of 2 day(s) past the policy)")
    assert "export objects: 4 csv, 0 ndjson, 0 parquet" in summary  # ndjson: unlimited (not named, no plan)
    assert "WARNING: 2 day(s) past retention.database (30d) are kept because they are not safely exported" in dry.stderr
    assert sum(rows_per_day(pg).values()) == 18  # nothing changed

    real = runner.invoke(main, ["--config", str(config), "retention", "--today", "2024-05-20"])
    assert real.exit_code == 0, real.output
    real_summary = real.output.strip().splitlines()[-1]
    assert real_summary.startswith("deleted: ")
    assert _numbers(real_summary) == _numbers(summary)
    assert set(rows_per_day(pg)) == {D(2024, 1, 5), D(2024, 1, 6)}

    again = runner.invoke(main, ["--config", str(config), "retention", "--today", "2024-05-20"])
    assert again.output.strip().splitlines()[-1].startswith("deleted: 0 rows of 0 day(s) from the database (kept 6 rows of 2 day(s)")


def test_legal_hold_and_bad_policies_on_the_command_line(pg: PgDatabase, tmp_path: Path) -> None:
    config = _setup(pg, tmp_path, legal_hold=True)
    runner = CliRunner()
    held = runner.invoke(main, ["--config", str(config), "retention"])
    assert held.exit_code == 0
    assert "WARNING: retention.legal_hold is true: nothing is deleted" in held.stderr and "legal hold: nothing deleted" in held.output
    assert sum(rows_per_day(pg).values()) == 18

    document = yaml.safe_load(config.read_text())
    document["retention"] = {"database": "7 yrs"}
    config.write_text(yaml.safe_dump(document))
    bad = runner.invoke(main, ["--config", str(config), "retention", "--dry-run"])
    assert bad.exit_code == 2
    assert "retention.database: '7 yrs' is not a duration" in bad.stderr
    bad_day = runner.invoke(main, ["--config", str(config), "retention", "--today", "20.05.2024"])
    assert bad_day.exit_code == 2 and "--today must be a day as YYYY-MM-DD" in bad_day.stderr


def test_the_dagster_job_records_the_figures(pg: PgDatabase, tmp_path: Path) -> None:
    config = _setup(pg, tmp_path)
    resources = {"audit": AuditPipelineResource(config_path=str(config))}

    def run(dry_run: bool) -> dg.ExecuteInProcessResult:
        return retention_job.execute_in_process(
            run_config={"ops": {"apply_retention": {"config": {"today": "2024-05-20", "dry_run": dry_run}}}},
            resources=resources,
            instance=dg.DagsterInstance.ephemeral(),
        )

    dry = run(True)
    assert dry.success and sum(rows_per_day(pg).values()) == 18
    real = run(False)
    assert real.success
    assert real.output_for_node("apply_retention") == dry.output_for_node("apply_retention")
    figures = real.output_for_node("apply_retention")
    assert figures["database_rows_deleted"] == 12 and figures["database_days_kept"] == 2 and figures["csv_objects_deleted"] == 4
    output = next(e for e in real.all_events if e.event_type_value == "STEP_OUTPUT")
    metadata = output.event_specific_data.metadata
    assert metadata["database_rows_deleted"].value == 12
    days = {d["day"]: d for d in metadata["database_days"].value}
    assert days["2024-01-01"]["rows_deleted"] == 3 and days["2024-01-05"]["action"] == "keep"
    observations = [e.event_specific_data.asset_observation for e in real.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    by_key = {o.asset_key.to_user_string(): o.metadata for o in observations}
    assert by_key["audit_logs"]["database_rows_deleted"].value == 12
    assert by_key["audit_logs_csv"]["objects_deleted_by_retention"].value == 4


def test_a_failing_run_reports_the_operators_message(pg: PgDatabase, tmp_path: Path) -> None:
    config = _setup(pg, tmp_path, database_url=pg.readonly_url)
    result = retention_job.execute_in_process(
        run_config={"ops": {"apply_retention": {"config": {"today": "2024-05-20"}}}},
        resources={"audit": AuditPipelineResource(config_path=str(config))},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "may not DELETE from audit_logs" in failure.step_failure_data.user_failure_data.description


def test_the_schedule_passes_the_tick_date() -> None:
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2024, 5, 20, 3, 0, tzinfo=dt.UTC))
    request = retention_schedule(context)
    assert request.run_key == "retention:2024-05-20"
    assert request.run_config == {"ops": {"apply_retention": {"config": {"today": "2024-05-20"}}}}
    assert dg.validate_run_config(retention_job, request.run_config)
    defs = definitions_for()
    assert defs.resolve_schedule_def("retention_schedule").cron_schedule == "0 3 * * *"
    assert defs.resolve_job_def("retention_job") is not None
