"""The AuditLogs Component in another team's `dg` project: scaffolded, checked and launched with `dg` itself.

The project is a fresh folder (its own `pyproject.toml` with `[tool.dg]`, its own package and defs folder) that
uses this environment, where `audit_pipeline` is installed with its `dagster_dg_cli.registry_modules` entry point,
exactly as `pip install audit-pipeline` into that project's environment would leave it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit_pipeline.sources.synthetic import generate_events

DG = Path(sys.executable).parent / "dg"
DAY = dt.date(2024, 1, 15)

pytestmark = pytest.mark.slow  # each `dg` command loads Dagster in a new process

DEFINITIONS = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent.parent)
"""


@pytest.fixture
def dg_project(tmp_path: Path) -> Path:
    root = tmp_path / "analytics"
    (root / "analytics" / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "analytics"\nversion = "0.1.0"\n\n[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\nroot_module = "analytics"\n'
    )
    (root / "analytics" / "__init__.py").write_text("")
    (root / "analytics" / "defs" / "__init__.py").write_text("")
    (root / "analytics" / "definitions.py").write_text(DEFINITIONS)
    (tmp_path / "dagster_home").mkdir()
    return root


def _dg(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_"))}
    base["PYTHONPATH"] = str(project)
    base["DAGSTER_HOME"] = str(project.parent / "dagster_home")
    return subprocess.run([str(DG), *args], cwd=project, env=base | env, capture_output=True, text=True, timeout=600, check=False)


def test_scaffold_check_and_launch_a_day_in_another_project(dg_project: Path, pg) -> None:
    events = list(generate_events(DAY, 240))
    pg.insert(events)

    scaffolded = _dg(dg_project, "scaffold", "defs", "audit_pipeline.defs.AuditLogs", "audit_logs")
    assert scaffolded.returncode == 0, scaffolded.stdout[-2000:] + scaffolded.stderr[-3000:]
    defs_yaml = dg_project / "analytics" / "defs" / "audit_logs" / "defs.yaml"
    text = defs_yaml.read_text()
    assert text.startswith("type: audit_pipeline.defs.AuditLogs")
    assert "${AUDIT_DATABASE_URL}" in text  # the scaffold never writes a secret, only the reference

    # Without the variable the secret refers to, the load fails with the same one line as `config check`.
    missing = _dg(dg_project, "check", "defs")
    assert missing.returncode != 0
    assert "source.database_url' refers to ${AUDIT_DATABASE_URL}, but the environment variable AUDIT_DATABASE_URL is not set" in missing.stdout + missing.stderr

    checked = _dg(dg_project, "check", "defs", AUDIT_DATABASE_URL=pg.readonly_url)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-3000:]

    launched = _dg(
        dg_project,
        "launch",
        "--assets",
        "audit_logs_csv,audit_logs_ndjson,audit_logs_parquet",
        "--partition",
        DAY.isoformat(),
        AUDIT_DATABASE_URL=pg.readonly_url,
    )
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-3000:]
    assert "PreviewWarning" not in launched.stdout + launched.stderr

    exports = dg_project / "audit-exports"  # export.url in the scaffolded defs.yaml, relative to the project
    ndjson = [p for p in exports.rglob("*.ndjson") if f"date={DAY.isoformat()}" in str(p)]
    assert len(ndjson) == 1, sorted(str(p) for p in exports.rglob("*"))
    lines = ndjson[0].read_text().splitlines()
    assert len(lines) == len(events)
    assert {line.split('"id":"')[1].split('"')[0] for line in lines} == {e["id"] for e in events}
    assert (exports / "manifests" / f"date={DAY.isoformat()}.json").exists()


TWO_DEPLOYMENTS = {
    "eu": "type: audit_pipeline.defs.AuditLogs\n\nattributes:\n  key_prefix: eu\n  settings:\n    source:\n      type: postgres\n"
    "      database_url: ${EU_DATABASE_URL}\n    export:\n      url: eu-exports\n      partition_start: '2024-01-01'\n",
    "us": "type: audit_pipeline.defs.AuditLogs\n\nattributes:\n  key_prefix: us\n  config_file: audit_pipeline.yaml\n",
}


def test_two_deployments_with_key_prefixes_check_and_launch_apart(dg_project: Path, pg, tmp_path: Path) -> None:
    """Two defs.yaml in one project (one with settings, one naming a file): both load, one day of one launches alone."""
    events = list(generate_events(DAY, 90))
    pg.insert(events)
    for prefix, text in TWO_DEPLOYMENTS.items():
        folder = dg_project / "analytics" / "defs" / f"audit_logs_{prefix}"
        folder.mkdir()
        (folder / "defs.yaml").write_text(text)
    us_exports = tmp_path / "us-exports"
    (dg_project / "analytics" / "defs" / "audit_logs_us" / "audit_pipeline.yaml").write_text(
        f"source:\n  type: postgres\n  database_url: ${{US_DATABASE_URL}}\nexport:\n  url: {us_exports}\n  partition_start: '2024-06-01'\n"
    )
    env = {"EU_DATABASE_URL": pg.readonly_url, "US_DATABASE_URL": pg.readonly_url}

    checked = _dg(dg_project, "check", "defs", **env)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-3000:]
    listed = _dg(dg_project, "list", "defs", "--json", **env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    for name in ("eu/audit_logs_csv", "us/audit_logs_csv", "eu__daily_export_job", "us__daily_export_job", "us__retention_schedule"):
        assert name in listed.stdout, name

    launched = _dg(dg_project, "launch", "--assets", "eu/audit_logs_csv,eu/audit_logs_ndjson,eu/audit_logs_parquet", "--partition", DAY.isoformat(), **env)
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-3000:]
    eu_exports = dg_project / "eu-exports"  # export.url in defs.yaml, relative to the project, as the scaffold's
    ndjson = [p for p in eu_exports.rglob("*.ndjson") if f"date={DAY.isoformat()}" in str(p)]
    assert len(ndjson) == 1 and len(ndjson[0].read_text().splitlines()) == len(events)
    assert not us_exports.exists()  # the other deployment ran nothing
