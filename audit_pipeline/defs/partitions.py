"""One partition per UTC day, from ``export.partition_start`` (or ``AUDIT_PARTITION_START``); a day exists once it has closed."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from audit_pipeline.errors import ConfigError
from audit_pipeline.settings import DEFAULT_PARTITION_START, Settings, load_settings


def daily_partitions_from(start: dt.date) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC")


def _configured_start() -> dt.date:
    # At import, a broken configuration falls back to the default start: the code location
    # then reports the configuration error itself (audit_pipeline.definitions), in one line.
    try:
        return load_settings().export.partition_start
    except ConfigError:
        return dt.date.fromisoformat(DEFAULT_PARTITION_START)


def check_partition_day(day: dt.date, settings: Settings, *, what: str = "DAY", today: dt.date | None = None) -> None:
    """Refuse a day that is not one of the partitions, naming the setting or the reason."""
    start = settings.export.partition_start
    today = today or dt.datetime.now(dt.UTC).date()
    if day < start:
        raise ConfigError(
            f"{what} {day} is before the first partition, export.partition_start {start} (AUDIT_PARTITION_START); "
            "export a later day or move the partition start"
        )
    if day >= today:
        when = "today" if day == today else "in the future"
        raise ConfigError(f"{what} {day} is {when} (UTC): a day is exported once it has closed, so the latest day is {today - dt.timedelta(days=1)}")


daily_partitions = daily_partitions_from(_configured_start())
