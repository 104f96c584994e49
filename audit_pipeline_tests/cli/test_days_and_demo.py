"""`audit-pipeline demo` records its runs where `dagster dev` looks and says what to do next; `days` lists the exports."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.defs.resources import DEMO_WARNING
from audit_pipeline.sources.demo import DEMO_DAYS, DEMO_EVENTS_PER_DAY

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # the demo's Dagster runs
def test_demo_runs_land_in_the_instance_dagster_dev_opens_and_days_lists_them(workdir, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    shutil.copy(REPO / "dagster.yaml", workdir / "dagster.yaml")  # the repository's local profile, as `dagster dev` reads it
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert "manifests/date=" in result.stdout and "Next steps:" in result.stdout and "dagster dev" in result.stdout
    instance = dg.DagsterInstance.from_config(str(workdir))
    runs = instance.get_runs()
    assert sorted(r.tags.get("dagster/partition") for r in runs) == [d.isoformat() for d in DEMO_DAYS]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    for run in runs:  # every run says it read the demo database
        assert any(DEMO_WARNING in (record.user_message or "") for record in instance.all_logs(run.run_id)), run.run_id

    listed = CliRunner().invoke(main, ["days"])
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == [d.isoformat() for d in DEMO_DAYS]
    assert all(r[1:] == [f"{DEMO_EVENTS_PER_DAY:,}"] * 3 + ["yes"] for r in rows), listed.stdout


def test_days_with_nothing_exported_says_how_to_start(workdir):
    result = CliRunner().invoke(main, ["days"])
    assert result.exit_code == 0 and "no exported days" in result.stderr
