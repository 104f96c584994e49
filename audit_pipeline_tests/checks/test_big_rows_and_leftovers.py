"""Rows of any size through every check and verify; staging left by a killed run; deep verification as a job."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
import yaml

from audit_pipeline.config.settings import load_settings
from audit_pipeline.defs.integrity import verify_job
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.exports.readback import check_completeness
from audit_pipeline.formats.csv_records import count_records, record_blocks
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.integrity.verify import Verifier
from audit_pipeline.retention.export_objects import ExportObject, exported_ids
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline.storage.staging import STAGING_DIR
from audit_pipeline_tests.built_defs import export_assets

DAY = dt.date(2024, 1, 15)


def _configure(workdir: Path, pg, integrity: bool = True) -> Path:
    exports = workdir / "exports"
    section = {} if integrity else {"enabled": False}
    (workdir / "audit_pipeline.yaml").write_text(
        yaml.safe_dump({"source": {"database_url": pg.readonly_url}, "export": {"url": str(exports)}, "integrity": section})
    )
    return exports


def _materialize(day: dt.date = DAY) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        export_assets(),
        partition_key=day.isoformat(),
        resources={"audit": AuditPipelineResource()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_csv_records_split_only_outside_quotes():
    rows = [b'a,"x\r\ny",1\r\n', b'b,"say ""hi""\n, twice",2\r\n', b"c,plain,3\r\n"]
    data = b"".join(rows)
    for block in (1, 2, 5, 7, 64):
        chunks = list(record_blocks(io.BytesIO(data), block))
        assert b"".join(chunks) == data
        for chunk in chunks:  # every chunk is whole records
            assert any(chunk.endswith(r) for r in rows)
        assert count_records(io.BytesIO(data), block) == 3
    assert count_records(io.BytesIO(data[:-3]), 4) == 2  # a cut-off record is not a row


@pytest.mark.slow
@pytest.mark.parametrize("megabytes", [20, 64])
def test_a_huge_row_passes_every_check_verify_and_retention_reads(pg, workdir, megabytes):
    exports = _configure(workdir, pg)
    events = list(generate_events(DAY, 50))
    # A metadata value bigger than any parse block: quotes, commas and newlines inside, as JSON text has.
    events[20]["metadata"] = {"blob": ('x"y,\n' * (megabytes * 1024 * 1024 // 5))[: megabytes * 1024 * 1024]}
    pg.insert(events)

    result = _materialize()

    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 9 and all(e.passed for e in evaluations), [e.description for e in evaluations if not e.passed]
    store = ObjectStore(str(exports))
    settings = load_settings().integrity
    (report,) = Verifier(store, Keyring.build(settings)).verify_range(DAY, DAY)
    assert report.ok, report.problems
    for fmt in ("csv", "ndjson", "parquet"):
        assert check_completeness(store, fmt, DAY, 50).passed  # the row-by-row read back retention uses without manifests
    for fmt in ("csv", "ndjson"):
        key = f"{fmt}/date={DAY}/audit_logs.{fmt}"
        ids = [i for batch in exported_ids(store, ExportObject(fmt, DAY, key), 1000, {"formula_protection": True}) for i in batch]
        assert sorted(ids) == sorted(e["id"] for e in events)


@pytest.mark.slow
def test_a_killed_runs_staging_is_removed_by_the_next_export(pg, workdir):
    exports = _configure(workdir, pg, integrity=False)
    pg.insert(generate_events(DAY, 100))
    holder = textwrap.dedent(
        f"""
        import sys, time
        from audit_pipeline.storage.object_store import ObjectStore
        with ObjectStore({str(exports)!r}).staging() as d:
            (d / "audit_logs.csv").write_bytes(b"x" * 100000)
            print(d, flush=True)
            time.sleep(600)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    killed = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, env=env)
    alive = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, env=env)
    try:
        killed_dir = Path(killed.stdout.readline().strip())  # type: ignore[union-attr]
        alive_dir = Path(alive.stdout.readline().strip())  # type: ignore[union-attr]
        assert killed_dir.is_dir() and alive_dir.is_dir() and killed_dir.parent == exports / STAGING_DIR
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        assert killed_dir.is_dir()  # what kill -9 leaves behind

        assert _materialize().success

        assert not killed_dir.exists()
        assert alive_dir.is_dir()  # a run still alive keeps its staging
        assert sorted(p.name for p in (exports / STAGING_DIR).iterdir()) == [alive_dir.name]
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.slow
def test_verify_job_recomputes_the_chain_and_fails_naming_the_day(pg, workdir):
    exports = _configure(workdir, pg)
    for day in (DAY, DAY + dt.timedelta(days=1)):
        pg.insert(generate_events(day, 120))
        assert _materialize(day).success
    run_config = {"ops": {"verify_exports": {"config": {"days": 0}}}}
    resources = {"audit": AuditPipelineResource()}

    ok = verify_job.execute_in_process(run_config=run_config, resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert ok.success

    # Same size, same object count; one event's text changed: only the chain (and the hash) can tell.
    path = exports / f"ndjson/date={DAY}/audit_logs.ndjson"
    lines = path.read_bytes().splitlines(keepends=True)
    event = json.loads(lines[5])
    event["result"] = "failure" if event["result"] != "failure" else "success"
    lines[5] = (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    path.write_bytes(b"".join(lines))
    failed = verify_job.execute_in_process(run_config=run_config, resources=resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)

    assert not failed.success
    failure = next(e for e in failed.all_events if e.is_step_failure)
    description = failure.step_failure_data.user_failure_data.description
    assert f"1 of 2 days do not verify: {DAY}" in description and "ndjson/date=2024-01-15/audit_logs.ndjson" in description
