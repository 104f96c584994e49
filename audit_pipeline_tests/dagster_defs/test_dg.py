"""Dagster's `dg` command line from the repository root: `dg check defs`, the documented `dg launch`, `dg dev`.

Each command runs in a copy of the project's root files (`pyproject.toml` with its `[tool.dg]`, the local
profile `dagster.yaml`, `workspace.yaml`) beside a link to the package, so the instance storage these
commands create relative to their folder stays out of the checkout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.conftest import free_port
from audit_pipeline_tests.helpers import stop_process_group

REPO = Path(__file__).resolve().parents[2]
DG = Path(sys.executable).parent / "dg"
EXPORTS_PAGE = REPO / "docs" / "exports.md"

pytestmark = pytest.mark.slow  # each starts Dagster in a new process (10-60 s); CI runs `dg check defs` itself


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("pyproject.toml", "dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO / name, root / name)
    (root / "audit_pipeline").symlink_to(REPO / "audit_pipeline", target_is_directory=True)
    # The project's own venv beside pyproject.toml, as in a clone: `dg` compares it with the activated one.
    (root / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return root


VENV_WARNING = "does not match the virtual environment"


def _env(**settings: str) -> dict[str, str]:
    # No activated venv: the README runs `.venv/bin/dg` as it is.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_")) and k != "VIRTUAL_ENV"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env | settings


def test_dg_check_defs_loads_the_code_location(project):
    done = subprocess.run([str(DG), "check", "defs"], cwd=project, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "All definitions loaded successfully" in done.stdout + done.stderr
    assert VENV_WARNING not in done.stdout + done.stderr  # [tool.dg.cli] suppress_warnings


def test_dg_check_defs_fails_on_definitions_that_do_not_load(project):
    """The CI step must be able to fail: a code location target that does not import is reported, exit non-zero."""
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'code_location_target_module = "audit_pipeline.definitions"', 'code_location_target_module = "audit_pipeline.no_such_module"'
        )
    )
    done = subprocess.run([str(DG), "check", "defs"], cwd=project, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "no_such_module" in done.stdout + done.stderr


def _documented_launch_command() -> list[str]:
    lines = [line for line in EXPORTS_PAGE.read_text(encoding="utf-8").splitlines() if line.startswith("dg launch ")]
    assert lines, "docs/exports.md no longer shows the `dg launch` command"
    return shlex.split(lines[0])


def test_the_documented_dg_launch_exports_a_day(pg, project, tmp_path):
    command = _documented_launch_command()
    day = dt.date.fromisoformat(command[command.index("--partition") + 1])
    pg.insert(generate_events(day, 300))
    out = tmp_path / "out"
    done = subprocess.run(
        [str(DG), *command[1:]],
        cwd=project,
        env=_env(AUDIT_DATABASE_URL=pg.readonly_url, AUDIT_EXPORT_URL=str(out)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert f"exported 300 events of {day}" in output
    assert "SupersessionWarning" not in output
    assert VENV_WARNING not in output
    # The run's DEBUG events (about 50 lines) stay in the event log; the terminal shows INFO and up.
    assert " - DEBUG - " not in output, output
    assert "RUN_SUCCESS" not in output
    assert (out / f"csv/date={day}/audit_logs.csv").read_bytes().count(b"\r\n") == 301
    assert (out / f"ndjson/date={day}/audit_logs.ndjson").read_bytes().count(b"\n") == 300
    assert (out / f"parquet/date={day}/audit_logs.parquet").stat().st_size > 0


def test_dg_launch_prints_the_debug_events_when_asked(pg, project, tmp_path):
    """The switch dagster.yaml documents: the run's console logger at DEBUG shows the step events again."""
    command = _documented_launch_command()
    day = dt.date.fromisoformat(command[command.index("--partition") + 1])
    pg.insert(generate_events(day, 10))
    switch = ["--config-json", json.dumps({"loggers": {"console": {"config": {"log_level": "DEBUG"}}}})]
    done = subprocess.run(
        [str(DG), *command[1:], *switch],
        cwd=project,
        env=_env(AUDIT_DATABASE_URL=pg.readonly_url, AUDIT_EXPORT_URL=str(tmp_path / "out")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stdout + done.stderr
    assert " - DEBUG - " in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("partition", "reason"),
    [
        ((dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)).isoformat(), "is in the future (UTC)"),
        ("2020-01-01", "is before the first partition, export.partition_start"),
    ],
)
def test_dg_launch_of_a_day_that_is_no_partition_says_why_in_one_line(project, tmp_path, partition, reason):
    command = _documented_launch_command()
    command[command.index("--partition") + 1] = partition
    done = subprocess.run(
        [str(DG), *command[1:]],
        cwd=project,
        env=_env(AUDIT_EXPORT_URL=str(tmp_path / "out"), AUDIT_PARTITION_START="2024-01-01"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr  # one line, no traceback
    assert done.stderr.startswith(f"error: --partition {partition} {reason}")
    assert not (tmp_path / "out").exists()


def test_dg_dev_serves_the_code_location(project, tmp_path):
    port = free_port()
    log = tmp_path / "dg-dev.log"
    with open(log, "wb") as out:
        # its own process group: one signal stops the webserver, the daemon and the code server
        process = subprocess.Popen([str(DG), "dev", "--port", str(port)], cwd=project, env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    loaded: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                body = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=10).json()
                entries = body["data"]["workspaceOrError"]["locationEntries"]
                loaded = [e["name"] for e in entries if e["loadStatus"] == "LOADED"]
                if loaded:
                    break
            time.sleep(1)
    finally:
        stop_process_group(process)
    assert loaded == ["audit_pipeline"], log.read_text()[-4000:]
    assert VENV_WARNING not in log.read_text()
    assert (project / ".dagster_home" / "storage").is_dir()  # the local profile's storage, in the project folder
