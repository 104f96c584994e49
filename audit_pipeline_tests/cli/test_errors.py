"""User mistakes end in one line and exit 2, never a traceback; operational failures exit 1."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit_pipeline import __version__
from audit_pipeline.cli.app import main

CLI = str(Path(sys.executable).parent / "audit-pipeline")


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_")) or k.startswith("AUDIT_TEST_")}
    return subprocess.run([CLI, *args], cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["export-day", "2023-06-01"], {}, "before the first partition, export.partition_start 2024-01-01"),
        (["export-day", dt.date.today().isoformat()], {}, "is today (UTC)"),
        (["export-day", "2999-01-01"], {}, "is in the future (UTC)"),
        (["export-day", "2024-02-30"], {}, "DAY must be a day as YYYY-MM-DD"),
        (["export-day", "2024-01-15"], {"AUDIT_PARTITION_START": "notadate"}, "AUDIT_PARTITION_START"),
        (["export-day"], {}, "Missing argument 'DAY'"),
        (["no-such-command"], {}, "No such command"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(workdir, args, env, expected):
    done = _run(args, workdir, **env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def test_version_and_verbose_flag(workdir):
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"audit-pipeline {__version__}"


@pytest.mark.slow
def test_an_unreachable_database_is_one_line_exit_1(workdir):
    done = _run(["export-day", "2024-01-15"], workdir, AUDIT_DATABASE_URL="postgresql://reader:S3CRET-PASSWORD-abc@127.0.0.1:1/audit")
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cannot connect to the audit database" in done.stderr and "no run started" in done.stderr  # checked before a run
    assert "S3CRET" not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_retention_with_nothing_to_do_says_so_once(workdir):
    result = CliRunner().invoke(main, ["retention", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output.count("nothing to do") == 1, result.output


def test_dead_letters_of_an_unknown_sink_are_an_error_not_zero(workdir):
    result = CliRunner().invoke(main, ["deadletters", "list", "elasticsearch"])
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "error: no sink named 'elasticsearch' in the configuration's sinks: section (configured: none), and no dead letters kept for it"
    )
