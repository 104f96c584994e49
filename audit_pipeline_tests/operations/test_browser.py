"""`dagster dev` as a user starts it, seen through headless Chromium.

The server runs in its own process group from a folder holding this repository's workspace.yaml
and dagster.yaml (so its SQLite storage stays out of the checkout), reads PostgreSQL, and is
stopped by signalling the whole group.  A materialization is launched with the UI's GraphQL API
and runs through the local profile's queue and the daemon.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from audit_pipeline.defs.exports import EXPORT_ASSETS
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.conftest import free_port
from audit_pipeline_tests.helpers import stop_process_group
from audit_pipeline_tests.operations.conftest import LOCAL_PROFILE, REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DAY = dt.date(2024, 1, 15)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium (bash .ci/run installs it)"),
]

LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}"""
RUN_STATUS = "query($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }"
LOCATION_STATUS = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)


class DagsterDev:
    def __init__(self, url: str) -> None:
        self.url = url

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]


def _wait(predicate, timeout: float, what: str, process: subprocess.Popen, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dagster dev exited with {process.returncode} while waiting for {what}:\n{log.read_text()[-4000:]}")
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


@pytest.fixture
def dagster_dev(pg, tmp_path: Path) -> Iterator[DagsterDev]:
    pg.insert(generate_events(DAY, 40))
    shutil.copy(REPO / "workspace.yaml", tmp_path / "workspace.yaml")
    shutil.copy(LOCAL_PROFILE, tmp_path / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_"))}
    env.update(AUDIT_DATABASE_URL=pg.readonly_url, AUDIT_EXPORT_URL=str(tmp_path / "exports"))
    port = free_port()
    log = tmp_path / "dagster-dev.log"
    with open(log, "wb") as out:
        # its own session and process group: one signal stops the webserver, daemon and code servers
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-p", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = DagsterDev(f"http://127.0.0.1:{port}")
    try:
        _wait(lambda: httpx.get(f"{server.url}/server_info", timeout=5).status_code == 200, 240, "the webserver", process, log)

        def loaded() -> bool:
            entries = server.graphql(LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
            assert all(e["locationOrLoadError"] is None or e["locationOrLoadError"]["__typename"] != "PythonError" for e in entries), entries
            return [e["name"] for e in entries if e["loadStatus"] == "LOADED"] == ["audit_pipeline"]

        _wait(loaded, 240, "the audit_pipeline code location", process, log)
        server.graphql("mutation { setNuxSeen }")  # the first-visit modal would cover the page
        yield server
    finally:
        stop_process_group(process)
    assert (tmp_path / ".dagster_home" / "storage").is_dir()  # the local profile's storage was used


def test_dagster_dev_shows_the_pipeline_and_runs_a_partition(dagster_dev, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    params = {
        "selector": {
            "repositoryLocationName": "audit_pipeline",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": [key.to_user_string()]} for key in EXPORT_ASSETS.values()],
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": DAY.isoformat()}]},
    }
    launched = dagster_dev.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def finished() -> str | None:
        status = dagster_dev.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    deadline = time.monotonic() + 300
    status = None
    while status is None and time.monotonic() < deadline:
        status = finished()
        time.sleep(2)
    assert status == "SUCCESS"
    assert (tmp_path / "exports" / "parquet" / f"date={DAY.isoformat()}" / "audit_logs.parquet").exists()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            # the asset graph of the exports group: the source table and the three daily exports
            page.goto(f"{dagster_dev.url}/locations/audit_pipeline/asset-groups/audit_exports/lineage", wait_until="domcontentloaded")
            for name in ("audit_logs", *(key.to_user_string() for key in EXPORT_ASSETS.values())):
                expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(tmp_path / "asset-graph.png"))

            # one partition's materialization metadata
            page.goto(f"{dagster_dev.url}/assets/audit_logs_csv?view=partitions&partition={DAY.isoformat()}", wait_until="domcontentloaded")
            for label in ("dagster/row_count", "bytes", "sha256", "min_created_at", "dagster/uri"):
                expect(page.get_by_text(label, exact=True).first).to_be_visible(timeout=60_000)
            expect(page.get_by_text("40", exact=True).first).to_be_visible()  # the day's events
            expect(page.get_by_text(f"{DAY.isoformat()}T", exact=False).first).to_be_visible()
            expect(page.get_by_text("Materialized (1)").first).to_be_visible()  # the partition status bar
            page.screenshot(path=str(tmp_path / "partition.png"), full_page=True)

            # the asset's checks, with their descriptions and this partition's results
            page.goto(f"{dagster_dev.url}/assets/audit_logs_csv?view=checks", wait_until="domcontentloaded")
            for name in ("complete", "schema", "integrity"):
                expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=60_000)
            expect(page.get_by_text("sealed row count equals the source", exact=False).first).to_be_visible()
            expect(page.get_by_text("Passed").first).to_be_visible()
            expect(page.get_by_text(DAY.isoformat(), exact=True).first).to_be_visible()  # the result is the partition's
            page.screenshot(path=str(tmp_path / "checks.png"), full_page=True)
        finally:
            browser.close()
