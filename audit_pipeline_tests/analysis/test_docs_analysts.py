"""The `audit-pipeline query` sessions in docs/analysts.md, run against the demo archive: the page shows real output."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.exports.day import export_day
from audit_pipeline.sources.demo import DEMO_DAYS, DemoSource
from audit_pipeline.storage.object_store import ObjectStore

PAGE = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"


def sessions() -> list[tuple[str, str]]:
    """(command, output) for every ``$ audit-pipeline query`` in the page's console blocks."""
    found = []
    for block in re.findall(r"```console\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S):
        lines = [line.strip() if line.startswith("  ") else line for line in block.splitlines()]
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            command = lines[i][2:]
            i += 1
            while command.count('"') % 2:  # a quoted SQL statement spanning lines
                command += "\n" + lines[i]
                i += 1
            output = []
            while i < len(lines) and not lines[i].startswith("$ "):
                output.append(lines[i])
                i += 1
            found.append((command, "\n".join(output).strip()))
    return found


@pytest.fixture(scope="module")
def demo_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    store = ObjectStore(str(root / "audit-exports"))
    source = DemoSource(root / "demo.db")
    source.seed()
    for day in DEMO_DAYS:
        export_day(source, store, day, ExportSettings())
    return root


def test_the_page_has_sessions() -> None:
    assert len(sessions()) >= 5


@pytest.mark.parametrize(("command", "output"), sessions(), ids=lambda value: value.splitlines()[0][:60])
def test_documented_session(command: str, output: str, demo_archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = shlex.split(command)
    env = {}
    while "=" in args[0]:
        name, value = args.pop(0).split("=", 1)
        env[name] = value
    assert args[0] == "audit-pipeline"
    monkeypatch.chdir(demo_archive)
    monkeypatch.setenv("AUDIT_EXPORT_URL", env.get("AUDIT_EXPORT_URL", "./audit-exports"))
    if "AUDIT_EXPORT_URL" in env:
        monkeypatch.setenv("AUDIT_EXPORT_URL", str(demo_archive / "empty"))
        output = output.replace("/tmp/empty", str(demo_archive / "empty"))
    result = CliRunner().invoke(main, args[1:])
    assert result.output.strip() == output
