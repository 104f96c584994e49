"""Is a day out of the ordinary?  Its figures against the median and MAD of the days before it.

The median absolute deviation is used rather than the standard deviation because one earlier
incident (a credential-stuffing day) would otherwise inflate the spread and hide the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

from audit_pipeline.analysis.summary import DaySummary
from audit_pipeline.config.sections.summary import SummarySettings


@dataclass(frozen=True)
class SpikeVerdict:
    """``passed`` is only True for a day that was judged and found ordinary: a day without enough
    history is *not evaluated* (``judged`` False, ``passed`` False), so it never shows as a green pass."""

    passed: bool
    findings: list[str]
    description: str
    judged: bool


def _limit(median: float, mad: float, floor: float, factor: float) -> float:
    return median + factor * max(mad, floor)


def judge(summary: DaySummary, settings: SummarySettings) -> SpikeVerdict:
    """Compare the day with its baseline; every finding carries the numbers behind it."""
    base = summary.baseline
    factor = settings.spike_factor
    if base.days < settings.min_history_days:
        return SpikeVerdict(
            passed=False,
            findings=[],
            description=(
                f"not evaluated: {base.days} earlier day(s) exported in the {settings.history_days}-day window, "
                f"{settings.min_history_days} needed (summary.min_history_days); export earlier days to build the baseline"
            ),
            judged=False,
        )
    findings = []
    fl_limit = _limit(base.failed_logins_median, base.failed_logins_mad, settings.min_mad_failed_logins, factor)
    if summary.failed_logins > fl_limit:
        findings.append(
            f"failed logins {summary.failed_logins} > {fl_limit:g} (median {base.failed_logins_median:g} + {factor:g} × MAD "
            f"{max(base.failed_logins_mad, settings.min_mad_failed_logins):g} over {base.days} days)"
        )
    fr_limit = _limit(base.failure_rate_median, base.failure_rate_mad, settings.min_mad_failure_rate, factor)
    if summary.logins and summary.failure_rate > fr_limit:
        findings.append(
            f"failure rate {summary.failure_rate:.2%} > {fr_limit:.2%} (median {base.failure_rate_median:.2%} + {factor:g} × MAD "
            f"{max(base.failure_rate_mad, settings.min_mad_failure_rate):.2%} over {base.days} days)"
        )
    if summary.new_actor_country_pairs > settings.new_pairs_threshold:
        findings.append(
            f"{summary.new_actor_country_pairs} new actor × country pairs > threshold {settings.new_pairs_threshold} "
            f"(none seen in the previous {settings.history_days} days)"
        )
    if findings:
        return SpikeVerdict(passed=False, findings=findings, description=f"{summary.day}: " + "; ".join(findings), judged=True)
    return SpikeVerdict(
        passed=True,
        findings=[],
        description=(
            f"{summary.day}: failed logins {summary.failed_logins} ≤ {fl_limit:g}, failure rate {summary.failure_rate:.2%} ≤ {fr_limit:.2%}, "
            f"{summary.new_actor_country_pairs} new actor × country pairs ≤ {settings.new_pairs_threshold} (baseline {base.days} days)"
        ),
        judged=True,
    )
