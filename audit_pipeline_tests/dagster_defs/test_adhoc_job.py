"""The Launchpad's ad-hoc export (`adhoc_export` job) writes what `audit-pipeline export` writes, byte for byte."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from audit_pipeline.defs.adhoc import adhoc_export_job
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.sources.synthetic import generate_events

DAYS = (dt.date(2024, 3, 4), dt.date(2024, 3, 5))
CLI = [str(Path(sys.executable).parent / "audit-pipeline")]


def _settings(pg, exports: Path) -> dict:
    return {"source": {"type": "postgres", "database_url": pg.readonly_url}, "export": {"url": str(exports)}}


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "parquet"])
def test_the_job_writes_the_commands_bytes_under_adhoc(pg, workdir: Path, fmt: str) -> None:
    for day in DAYS:
        pg.insert(generate_events(day, 400))
    exports = workdir / "exports"
    settings = _settings(pg, exports)
    request = {"start": "2024-03-04T06:00:00Z", "end": "2024-03-05T18:00:00+00:00", "types": ["user.*"], "tenants": ["ten_000?"], "format": fmt}

    result = adhoc_export_job.execute_in_process(
        run_config={"ops": {"export_range": {"config": request}}},
        resources={"audit": AuditPipelineResource(settings_json=json.dumps(settings))},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    stored = exports / "adhoc" / f"{result.run_id}.{fmt}"
    metadata = {
        key: value.value
        for event in result.all_events
        if event.event_type_value == "STEP_OUTPUT"
        for key, value in event.event_specific_data.metadata.items()  # type: ignore[union-attr]
    }
    data = stored.read_bytes()
    assert metadata["sha256"] == hashlib.sha256(data).hexdigest()
    assert metadata["bytes"] == len(data)
    assert str(stored) in str(metadata["uri"])

    config = workdir / "audit_pipeline.yaml"
    config.write_text(yaml.safe_dump(settings))
    out = workdir / f"command.{fmt}"
    done = subprocess.run(
        [
            *CLI,
            "--config",
            str(config),
            "export",
            "--from",
            request["start"],
            "--to",
            request["end"],
            "--type",
            "user.*",
            "--tenant",
            "ten_000?",
            "--format",
            fmt,
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_bytes() == data
    assert metadata["rows"] > 0
    assert f"exported {metadata['rows']:,} events" in done.stderr


def test_a_bad_request_fails_the_run_naming_the_field(pg, workdir: Path) -> None:
    settings = _settings(pg, workdir / "exports")
    result = adhoc_export_job.execute_in_process(
        run_config={"ops": {"export_range": {"config": {"start": "2024-03-05T00:00:00Z", "end": "2024-03-04T00:00:00Z"}}}},
        resources={"audit": AuditPipelineResource(settings_json=json.dumps(settings))},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "end 2024-03-04T00:00:00Z must be after start 2024-03-05T00:00:00Z" in str(failure.event_specific_data.error)  # type: ignore[union-attr]
    assert not (workdir / "exports" / "adhoc").exists()
