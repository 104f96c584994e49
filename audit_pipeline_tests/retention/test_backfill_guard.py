"""A backfill of a day whose rows retention deleted never replaces its exports with an emptier copy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.core.layout import manifest_key
from audit_pipeline.core.layout import retention_record_key as record_key
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.exports.day import export_day
from audit_pipeline.integrity.manifest import Manifest
from audit_pipeline.retention.record import ReexportGuard, RetentionRecord, RetiredDayError, read_record, write_record
from audit_pipeline.retention.run import run_retention
from audit_pipeline.sources.registry import open_source
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.built_defs import export_definitions
from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.retention.support import export_days, fill_days, settings_for

DAY = dt.date(2024, 1, 2)
TODAY = dt.date(2024, 5, 20)


def _export_asset_and_table() -> list[dg.AssetsDefinition | dg.AssetSpec]:
    built = export_definitions()
    return [built.daily_export, built.table]


def _snapshot(store: ObjectStore) -> dict[str, bytes]:
    return {key: store.read_bytes(key) for key in store.list("") if not key.startswith("retention/")}


def _retired_day(pg: PgDatabase, tmp_path: Path) -> tuple[ObjectStore, dict[str, bytes]]:
    """DAY exported, then its rows deleted by retention; the store and what it held afterwards."""
    fill_days(pg, DAY, DAY)
    settings = settings_for(tmp_path, pg, {"database": "30d"})
    export_days(settings, [DAY])
    run_retention(settings, today=TODAY)
    store = ObjectStore.from_settings(settings.export)
    return store, _snapshot(store)


def test_export_after_retention_is_refused_then_forced_and_recorded(pg: PgDatabase, tmp_path: Path) -> None:
    fill_days(pg, DAY, DAY)
    settings = settings_for(tmp_path, pg, {"database": "30d"})
    export_days(settings, [DAY])
    assert run_retention(settings, today=TODAY).rows_deleted == {DAY: 3}
    store = ObjectStore.from_settings(settings.export)
    published = _snapshot(store)

    with pytest.raises(RetiredDayError) as caught:
        export_days(settings, [DAY])
    message = str(caught.value)
    assert message.startswith("2024-01-02: retention deleted this day's rows from the database (deleted, 3 rows exported and checked first")
    assert "nothing was written" in message and "audit-pipeline export-day DAY --force" in message and "force: true" in message
    assert _snapshot(store) == published

    # Rows restored from a backup, exported again on purpose: the manifest records it.
    fill_days(pg, DAY, DAY, per_day=2, prefix="restored")
    result = dg.materialize(
        _export_asset_and_table(),
        partition_key=DAY.isoformat(),
        resources={"audit": AuditPipelineResource(config_path=str(tmp_path / "audit_pipeline.yaml"))},
        run_config={"ops": {"audit_logs_daily_export": {"config": {"force": True}}}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    manifest = Manifest.from_bytes(store.read_bytes(manifest_key(DAY)))
    assert manifest.rows == 2
    assert manifest.history[-1].action == "rechained"
    assert manifest.history[-1].reason.startswith("forced re-export after retention deleted the day's rows from the database")
    assert manifest.history[-1].rows_before == 3

    # The day's exports and rows agree again: retention checks and deletes it anew, and the guard is back.
    assert read_record(store, DAY).status == "re-exported"
    assert run_retention(settings, today=TODAY).rows_deleted == {DAY: 2}
    record = read_record(store, DAY)
    assert record is not None and record.status == "deleted" and record.rows_at_start == 2
    with pytest.raises(RetiredDayError):
        export_days(settings, [DAY])


def test_the_dagster_asset_refuses_without_force(pg: PgDatabase, tmp_path: Path) -> None:
    store, published = _retired_day(pg, tmp_path)
    result = dg.materialize(
        _export_asset_and_table(),
        partition_key=DAY.isoformat(),
        resources={"audit": AuditPipelineResource(config_path=str(tmp_path / "audit_pipeline.yaml"))},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_failure_data.user_failure_data.description.startswith("2024-01-02: retention deleted this day's rows")
    assert _snapshot(store) == published


def test_a_deletion_that_starts_during_an_export_stops_it_before_publishing(pg: PgDatabase, tmp_path: Path) -> None:
    """Retention writes its record before deleting; the export checks again after reading, before publishing."""
    fill_days(pg, DAY, DAY)
    settings = settings_for(tmp_path, pg, {"database": "30d"}, integrity={"enabled": False})
    export_days(settings, [DAY])
    store = ObjectStore.from_settings(settings.export)
    published = _snapshot(store)

    def retention_begins(export, written):  # the day's rows are being deleted while this export wrote its files
        write_record(store, RetentionRecord(DAY, "deleting", 3, 3, "parquet/x", None, "30d", "2024-05-20T03:00:00+00:00"))
        return []

    with open_source(settings) as source, pytest.raises(RetiredDayError):
        export_day(source, store, DAY, settings.export, before_publish=retention_begins, guard=ReexportGuard(store, DAY))
    assert _snapshot(store) == published
    assert store.exists(record_key(DAY))


def test_rechain_refuses_a_day_retention_emptied(pg: PgDatabase, tmp_path: Path) -> None:
    """The command line passes the guard to the export as the Dagster asset does: a rechain is no way around it."""
    store, published = _retired_day(pg, tmp_path)
    config = tmp_path / "audit_pipeline.yaml"
    result = CliRunner().invoke(main, ["--config", str(config), "rechain", "--from", DAY.isoformat(), "--reason", "rows restored"])
    assert result.exit_code != 0
    assert "2024-01-02: retention deleted this day's rows from the database" in result.output
    assert "Traceback" not in result.output
    assert _snapshot(store) == published
    assert read_record(store, DAY).status == "deleted"
