"""The ``summary:`` section (typed with the rest of the settings in :mod:`audit_pipeline.sections.summary`)."""

from __future__ import annotations

from audit_pipeline.sections.summary import SummarySettings

__all__ = ["SummarySettings"]
