"""A day whose blocking checks failed feeds nothing downstream; the exports carry the `export.sealed_by` freshness."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from audit_pipeline.config.settings import settings_from_mapping
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.defs.build import build_definitions
from audit_pipeline.defs.exports import EXPORT_ASSETS
from audit_pipeline.defs.summary import SUMMARY_ASSET

PARQUET = EXPORT_ASSETS["parquet"]


def _defs(**export: object) -> dg.Definitions:
    return build_definitions(settings_from_mapping({"export": {"partition_start": "2024-01-01", **export}}, "test"))


def _summary_requested(defs: dg.Definitions, failing: str | None) -> bool:
    """Whether the automation asks for the summary of a day exported after its previous evaluation."""
    instance = dg.DagsterInstance.ephemeral()
    selection = dg.AssetSelection.assets(SUMMARY_ASSET)
    before = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
    day = _export(instance, failing)
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection, cursor=before.cursor)
    return day in after.get_requested_partitions(SUMMARY_ASSET)


def _export(instance: dg.DagsterInstance, failing: str | None) -> str:
    """The latest day "exported" in all three formats by a run whose checks evaluate as the real ones would,
    ``failing`` failing on the Parquet object (the real export needs a source; what the automation reads is the
    materializations and check evaluations of these keys)."""
    day = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()  # the latest partition: eager() looks there
    partitions = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")
    names = ("complete", "schema", "integrity")

    @dg.multi_asset(
        specs=[dg.AssetSpec(key, partitions_def=partitions) for key in EXPORT_ASSETS.values()],
        check_specs=[
            dg.AssetCheckSpec(name, asset=key, blocking=name != "schema", partitions_def=partitions) for key in EXPORT_ASSETS.values() for name in names
        ],
        partitions_def=partitions,
    )
    def export():  # type: ignore[no-untyped-def]
        for key in EXPORT_ASSETS.values():
            yield dg.MaterializeResult(asset_key=key)
        for key in EXPORT_ASSETS.values():
            for name in names:
                yield dg.AssetCheckResult(asset_key=key, check_name=name, passed=not (key == PARQUET and name == failing))

    dg.materialize([export], partition_key=day, instance=instance, raise_on_error=False)
    return day


@pytest.mark.parametrize("check", ["complete", "integrity"])
def test_a_failed_blocking_check_keeps_the_day_from_the_summary(check: str) -> None:
    assert not _summary_requested(_defs(), failing=check)


@pytest.mark.parametrize("check", [None, "schema"])
def test_a_day_whose_blocking_checks_pass_is_summarised(check: str | None) -> None:
    assert _summary_requested(_defs(), failing=check)


def test_exports_are_stale_unless_sealed_by_the_configured_time() -> None:
    specs = {spec.key: spec for spec in _defs(sealed_by="04:30").resolve_all_asset_specs()}
    for key in EXPORT_ASSETS.values():
        policy = specs[key].freshness_policy
        assert policy is not None
        assert policy.deadline_cron == "30 4 * * *"
        assert policy.lower_bound_delta == dt.timedelta(hours=4, minutes=30)


@pytest.mark.parametrize("value", ["3:00", "24:00", "00:00", "noon"])
def test_a_bad_sealed_by_is_one_line(value: str) -> None:
    with pytest.raises(ConfigError, match=r"export.sealed_by.*must be a UTC time of day after midnight, HH:MM"):
        _defs(sealed_by=value)
