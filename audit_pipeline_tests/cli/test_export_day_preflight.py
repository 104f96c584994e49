"""A failed `export-day` that publishes nothing leaves the day's status in the Dagster UI as the store holds it.

Dagster shows a partition Failed once a run that planned it fails, whatever the run published.  `export-day`
checks the source and the store before it starts a run, so a wrong role, database, port or bucket is one line
(exit 1) and no run: the day exported earlier stays Materialized, not red.  The UI's history belongs to the
Dagster instance, so `export-day` says when the instance's latest export went to another store than configured.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from audit_pipeline.cli.app import main
from audit_pipeline.defs.exports import EXPORT_ASSETS
from audit_pipeline.defs.partitions import daily_partitions_from
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.conftest import free_port

DAY = dt.date(2025, 6, 10)
START = dt.date(2024, 1, 1)


@pytest.fixture
def exported(workdir: Path, pg, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    """DAY exported once, recorded in a Dagster instance of its own (as `dagster dev` would show it)."""
    home = workdir / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("AUDIT_EXPORT_URL", str(workdir / "store"))
    monkeypatch.setenv("AUDIT_PARTITION_START", START.isoformat())
    pg.insert(generate_events(DAY, 50))
    done = CliRunner().invoke(main, ["export-day", DAY.isoformat()], env={"AUDIT_DATABASE_URL": pg.readonly_url})
    assert done.exit_code == 0, done.output
    return dg.DagsterInstance.get()


def _failed_days(instance: dg.DagsterInstance) -> dict[str, list[str]]:
    """Each export asset's Failed partitions, as the UI's catalog reads them (the asset status cache)."""
    partitions = daily_partitions_from(START)
    failed = {}
    for fmt, key in EXPORT_ASSETS.items():
        value = get_and_update_asset_status_cache_value(instance, key, partitions)
        assert value is not None
        failed[fmt] = sorted(value.deserialize_failed_partition_subsets(partitions).get_partition_keys())
    return failed


def _wrong_sources(pg) -> dict[str, str]:
    from sqlalchemy.engine import make_url

    url = make_url(pg.readonly_url)
    return {
        "role": url.set(username="no_such_role").render_as_string(hide_password=False),
        "database": url.set(database="no_such_database").render_as_string(hide_password=False),
        "port": url.set(port=free_port()).render_as_string(hide_password=False),
    }


def test_a_wrong_role_database_or_port_fails_in_one_line_and_leaves_the_exported_day_materialized(exported, pg):
    instance = exported
    assert _failed_days(instance) == {"csv": [], "ndjson": [], "parquet": []}
    for what, url in _wrong_sources(pg).items():
        done = CliRunner().invoke(main, ["export-day", DAY.isoformat()], env={"AUDIT_DATABASE_URL": url})
        assert done.exit_code == 1, (what, done.output)
        (line,) = done.stderr.splitlines()
        assert line.startswith("error: source: ") and "fix source.database_url (AUDIT_DATABASE_URL)" in line, line
        assert "no run started" in line
    # The one successful run is all the instance holds: no failed attempt paints the day red.
    assert [r.status for r in instance.get_runs()] == [dg.DagsterRunStatus.SUCCESS]
    assert _failed_days(instance) == {"csv": [], "ndjson": [], "parquet": []}
    verified = CliRunner().invoke(main, ["verify"])
    assert verified.exit_code == 0, verified.output


def test_a_bucket_that_does_not_exist_fails_before_a_run(exported, pg, s3_server):
    done = CliRunner().invoke(
        main,
        ["export-day", DAY.isoformat()],
        env={
            "AUDIT_DATABASE_URL": pg.readonly_url,
            "AUDIT_EXPORT_URL": "s3://no-such-bucket-for-audit/exports",
            "AUDIT_S3_ENDPOINT_URL": s3_server.endpoint_url,
        },
    )
    assert done.exit_code == 1, done.output
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: export store: ") and "no-such-bucket-for-audit" in line and "fix export.url" in line
    assert len(exported.get_runs()) == 1
    assert _failed_days(exported)["csv"] == []


def test_config_check_with_no_instance_history_says_nothing_of_it(workdir):
    done = CliRunner().invoke(main, ["config", "check"])
    assert done.exit_code == 0, done.output
    assert "Dagster instance" not in done.stderr
    assert not (workdir / ".dagster_home").exists()


def test_an_instance_whose_exports_went_to_another_store_is_named(exported, pg, workdir):
    other = workdir / "other-store"
    done = CliRunner().invoke(main, ["export-day", DAY.isoformat()], env={"AUDIT_DATABASE_URL": pg.readonly_url, "AUDIT_EXPORT_URL": str(other)})
    assert done.exit_code == 0, done.output
    notes = [line for line in done.stderr.splitlines() if line.startswith("note: the Dagster instance")]
    assert len(notes) == 1, done.stderr
    assert f"({DAY}) in {(workdir / 'store').as_uri()}" in notes[0] and f"export.url is {other.as_uri()}" in notes[0]
    # `config check` says the same of a configuration that points at the first store again.
    checked = CliRunner().invoke(main, ["config", "check"], env={"AUDIT_DATABASE_URL": pg.readonly_url})
    assert checked.exit_code == 0, checked.output
    assert f"last recorded an export ({DAY}) in {other.as_uri()}" in checked.stderr
    # Once the instance's latest export is in the configured store, nothing more is said.
    again = CliRunner().invoke(main, ["export-day", DAY.isoformat()], env={"AUDIT_DATABASE_URL": pg.readonly_url, "AUDIT_EXPORT_URL": str(other)})
    assert again.exit_code == 0, again.output
    assert "note: the Dagster instance" not in again.stderr
