"""The local profile's compute log manager: a run's stdout and stderr reach both the captured files (what the
UI shows) and the terminal, from every kind of writer, with no helper process beside the run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
import yaml

from audit_pipeline.defs.compute_logs import ThreadMirroredComputeLogManager
from audit_pipeline_tests.operations.conftest import REPO

DAGSTER = str(Path(sys.executable).parent / "dagster")

ASSETS = textwrap.dedent(
    """
    import os, subprocess, sys
    import dagster as dg
    import psutil

    @dg.asset
    def noisy() -> None:
        print("python-stdout-line", flush=True)
        print("python-stderr-line", file=sys.stderr, flush=True)
        os.write(1, b"fd-stdout-line\\n")
        os.write(2, b"fd-stderr-line\\n")
        subprocess.run(["echo", "child-stdout-line"], check=True)
        os.write(1, b"x" * 300_000 + b"\\n")  # more than a pipe holds: a writer never waits for the mirror
        helpers = [p.name() for p in psutil.Process().children(recursive=True)]
        print(f"helpers={len(helpers)}", flush=True)

    defs = dg.Definitions(assets=[noisy])
    """
)


def test_the_local_profile_uses_the_thread_mirrored_manager(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the profile's paths are relative: keep them out of the checkout
    with dg.DagsterInstance.from_config(str(REPO)) as instance:
        assert isinstance(instance.compute_log_manager, ThreadMirroredComputeLogManager)
        assert Path(instance.compute_log_manager._base_dir).resolve() == (tmp_path / ".dagster_home" / "compute_logs").resolve()


@pytest.mark.slow  # a `dagster asset materialize` process
def test_a_run_is_captured_and_mirrored_without_helper_processes(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    profile = yaml.safe_load((REPO / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(
        yaml.safe_dump({"compute_logs": {**profile["compute_logs"], "config": {"base_dir": str(home / "logs")}}, "telemetry": {"enabled": False}})
    )
    (tmp_path / "noisy_assets.py").write_text(ASSETS)
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}

    done = subprocess.run(
        [DAGSTER, "asset", "materialize", "-f", str(tmp_path / "noisy_assets.py"), "--select", "noisy"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    for line in ("python-stdout-line", "fd-stdout-line", "child-stdout-line", "helpers=0"):
        assert line in done.stdout  # mirrored to the terminal
    for line in ("python-stderr-line", "fd-stderr-line"):
        assert line in done.stderr
    assert "x" * 300_000 in done.stdout
    captured_out = "".join(p.read_text() for p in (home / "logs").rglob("*.out"))
    captured_err = "".join(p.read_text() for p in (home / "logs").rglob("*.err"))
    for line in ("python-stdout-line", "fd-stdout-line", "child-stdout-line", "helpers=0"):
        assert line in captured_out  # what the UI shows
    for line in ("python-stderr-line", "fd-stderr-line"):
        assert line in captured_err
    assert list((home / "logs").rglob("*.complete"))
