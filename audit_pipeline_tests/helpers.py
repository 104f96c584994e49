"""Small helpers shared by tests: read exports back as Python values."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audit_pipeline.core.schema import COLUMNS

csv.field_size_limit(sys.maxsize)  # metadata may be megabytes


def read_csv_rows(data: bytes) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    return list(reader)


def read_ndjson_rows(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def wait_until(condition: Callable[[], object], what: str, *, timeout: float = 120, interval: float = 0.05) -> None:
    """Poll `condition` until it is true; fail naming `what` after `timeout` seconds instead of hanging the suite.

    The timeout is a deadline for a stuck test, not a timing assertion: it is far above any expected wait.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started with ``start_new_session=True`` (``dagster dev``, ``dg dev``) and everything it
    spawned: one SIGTERM to the group lets the webserver, daemon and code servers shut down, SIGKILL after 60 s,
    and a last SIGKILL for any code server left in the group."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
