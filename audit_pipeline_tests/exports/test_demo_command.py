"""The README's first command: `audit-pipeline demo` on the embedded default, no server needed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.sources.demo import DEMO_DAYS, DEMO_EVENTS_PER_DAY


@pytest.mark.slow
def test_demo_exports_the_demo_days_and_prints_where(workdir):
    result = CliRunner().invoke(main, ["demo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    exports = workdir / "audit-exports"
    for day in DEMO_DAYS:
        assert f"{day}: ok" in result.output
        ndjson = exports / f"ndjson/date={day}/audit_logs.ndjson"
        assert f"file://{ndjson}" in result.output
        lines = ndjson.read_text(encoding="utf-8").splitlines()
        assert len(lines) == DEMO_EVENTS_PER_DAY
        first = json.loads(lines[0])
        assert first["created_at"].startswith(day.isoformat()) and isinstance(first["metadata"], dict)
        assert (exports / f"parquet/date={day}/audit_logs.parquet").exists()
    # Running it again changes nothing: the demo database is seeded once and exports are deterministic.
    before = {p: p.read_bytes() for p in exports.rglob("*.csv")}
    assert CliRunner().invoke(main, ["demo"]).exit_code == 0
    assert {p: p.read_bytes() for p in exports.rglob("*.csv")} == before


def test_export_day_rejects_bad_days(workdir):
    result = CliRunner().invoke(main, ["export-day", "2024-13-01"])
    assert result.exit_code == 2
    assert "DAY must be a day as YYYY-MM-DD" in result.output
    result = CliRunner().invoke(main, ["export-day", "2024-01-05", "--to", "2024-01-01"])
    assert result.exit_code == 2 and "is before DAY" in result.output
