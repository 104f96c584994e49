"""One partition per UTC day, from ``export.partition_start`` (or ``AUDIT_PARTITION_START``); a day exists once it has closed."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from audit_pipeline.errors import ConfigError
from audit_pipeline.partition_days import check_partition_day
from audit_pipeline.settings import DEFAULT_PARTITION_START, load_settings

__all__ = ["check_partition_day", "daily_partitions", "daily_partitions_from"]


def daily_partitions_from(start: dt.date) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC")


def _configured_start() -> dt.date:
    # At import, a broken configuration falls back to the default start: the code location
    # then reports the configuration error itself (audit_pipeline.definitions), in one line.
    try:
        return load_settings().export.partition_start
    except ConfigError:
        return dt.date.fromisoformat(DEFAULT_PARTITION_START)


daily_partitions = daily_partitions_from(_configured_start())
