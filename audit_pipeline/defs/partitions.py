"""One partition per UTC day, from ``AUDIT_PARTITION_START``; a day exists once it has closed."""

from __future__ import annotations

import os

import dagster as dg

from audit_pipeline.settings import DEFAULT_PARTITION_START

PARTITION_START = os.environ.get("AUDIT_PARTITION_START") or DEFAULT_PARTITION_START

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITION_START, timezone="UTC")
