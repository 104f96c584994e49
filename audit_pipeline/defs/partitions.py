"""One partition per UTC day, from ``export.partition_start``; a day exists once it has closed.

Built from the settings in hand (``build_definitions``), never at import: one code-location load reads the
settings once."""

from __future__ import annotations

import datetime as dt

import dagster as dg

__all__ = ["daily_partitions_from"]


def daily_partitions_from(start: dt.date) -> dg.DailyPartitionsDefinition:
    """The daily partitions of a deployment whose ``export.partition_start`` is ``start``."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC")
