"""Which days are partitions: from ``export.partition_start`` up to yesterday (UTC), a day exists once it has closed.

Kept apart from the Dagster definitions so the command line can refuse a day in one line
without loading Dagster.
"""

from __future__ import annotations

import datetime as dt

from audit_pipeline.config.settings import Settings
from audit_pipeline.core.errors import ConfigError


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
