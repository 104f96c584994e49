"""``summary:``: what counts as a login, how much history, and when a day is a spike."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SummarySettings(BaseModel):
    """Settings of the daily security summary and of its ``no_spike`` check (all optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Event types (globs, ``*`` and ``?``) that are login attempts; a failed one has ``result = failure``.
    login_types: tuple[str, ...] = ("user.login", "user.login_failed")
    #: Rows in the "top actors by failures" list.
    top_actors: int = Field(default=10, ge=1, le=1_000)
    #: Examples of new actor × country pairs kept in summary.json (the count is always exact).
    new_pair_examples: int = Field(default=20, ge=0, le=10_000)
    #: Days before the summarised one that form its baseline (new pairs, median and MAD).
    history_days: int = Field(default=28, ge=1, le=366)
    #: A figure is a spike when it exceeds the baseline median by more than this many MADs.
    spike_factor: float = Field(default=5.0, gt=0)
    #: Fewer baseline days than this and the check does not judge (a new archive has no normal yet).
    min_history_days: int = Field(default=7, ge=1)
    #: Floors of the MAD, so that a perfectly flat history does not make one extra failure a spike.
    min_mad_failed_logins: float = Field(default=1.0, ge=0)
    min_mad_failure_rate: float = Field(default=0.01, ge=0)
    #: More new actor × country pairs than this in one day is a spike.
    new_pairs_threshold: int = Field(default=50, ge=0)

    @field_validator("login_types")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one login event type, e.g. [user.login, user.login_failed]")
        from audit_pipeline.core.event_filters import check_pattern

        return tuple(check_pattern(p) for p in value)
