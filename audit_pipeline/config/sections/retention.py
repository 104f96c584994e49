"""``retention:``: how long rows, exports and indices are kept; durations parsed when the file loads.

A duration is ``Nd`` (days), ``Nw`` (weeks), ``Ny`` (calendar years) or ``unlimited``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, SecretStr, WithJsonSchema, model_validator

from audit_pipeline.core.layout import FORMATS  # the export formats a per-format retention names

_DURATION = re.compile(r"^(\d+)([dwy])$")
_UNITS = {"d": "day", "w": "week", "y": "year"}

#: HelloJohn Cloud's plans, as their default retention.
PLANS: dict[str, str] = {"free": "7d", "pro": "90d", "enterprise": "365d", "unlimited": "unlimited"}


@dataclass(frozen=True)
class Duration:
    """A retention period; ``count`` None means unlimited."""

    count: int | None
    unit: Literal["d", "w", "y"] = "d"

    @property
    def unlimited(self) -> bool:
        return self.count is None

    def __str__(self) -> str:
        return "unlimited" if self.count is None else f"{self.count}{self.unit}"

    def cutoff(self, today: dt.date) -> dt.date | None:
        """The oldest day kept on ``today``; days before it are due.  None: nothing is ever due."""
        if self.count is None:
            return None
        try:
            if self.unit == "y":
                year = today.year - self.count
                if today.month == 2 and today.day == 29 and not _leap(year):
                    return dt.date(year, 2, 28)
                return today.replace(year=year)
            return today - dt.timedelta(days=self.count * (7 if self.unit == "w" else 1))
        except (ValueError, OverflowError):
            return None  # before year 1: nothing can be that old

    def keeps_at_least(self, other: Duration) -> bool:
        """True when this period never ends before ``other`` does, on any run date."""
        if self.count is None:
            return True
        if other.count is None:
            return False
        for offset in range(0, 366 * 8, 1):  # two leap cycles of run dates: exact for day and year periods
            today = dt.date(2023, 1, 1) + dt.timedelta(days=offset)
            mine, theirs = self.cutoff(today), other.cutoff(today)
            if mine is not None and theirs is not None and mine > theirs:
                return False
        return True


UNLIMITED = Duration(None)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def parse_retention(value: Any) -> Duration:
    """``7d``, ``2w``, ``7y`` or ``unlimited``; anything else is refused with the accepted forms."""
    if isinstance(value, Duration):
        return value
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a duration: write it as 7d, 90d, 2w, 1y, 7y or unlimited")
    if isinstance(value, int | float):
        raise ValueError(f"{value!r} has no unit: write {value}d for days or {value}y for years (or unlimited)")
    text = str(value).strip()
    if text.lower() == "unlimited":
        return UNLIMITED
    if text.startswith("-"):
        raise ValueError(f"{text!r} is negative: a retention period is a positive duration such as 7d, or unlimited")
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: write a whole number and one unit, d (days), w (weeks) or y (years), e.g. 7d, 90d, 1y, 7y; or unlimited")
    count, unit = int(match.group(1)), match.group(2)
    if count == 0:
        raise ValueError(f"{text!r} would delete today's rows: the shortest retention is 1d (use unlimited to keep everything)")
    if count > (9_000 if unit == "y" else 3_000_000):
        raise ValueError(f"{text!r} is longer than the calendar: use unlimited")
    return Duration(count, unit)  # type: ignore[arg-type]


#: A duration as written in the file; JSON Schema and the resolved configuration show it as text.
DurationField = Annotated[
    Duration,
    BeforeValidator(parse_retention),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+[dwy]|unlimited)$", "examples": ["7d", "90d", "2w", "7y", "unlimited"]}),
]


class ExportsPolicy(BaseModel):
    """``retention.exports``: per format; ``plan`` gives the formats not named."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    plan: Literal["free", "pro", "enterprise", "unlimited"] | None = None
    csv: DurationField | None = None
    ndjson: DurationField | None = None
    parquet: DurationField | None = None

    def for_format(self, fmt: str) -> Duration:
        given: Duration | None = getattr(self, fmt)
        if given is not None:
            return given
        return parse_retention(PLANS[self.plan]) if self.plan else UNLIMITED


def _exports_shorthand(value: Any) -> Any:
    """``exports: pro`` is a plan, ``exports: 90d`` applies to every format."""
    if isinstance(value, str):
        return {"plan": value} if value in PLANS else dict.fromkeys(FORMATS, value)
    return value


class RetentionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    database: DurationField = UNLIMITED
    #: A role that may SELECT and DELETE on the audit table; give it as ``${VAR}``.
    database_url: SecretStr | None = None
    #: Rows per DELETE statement, each committed on its own: bounds lock time and WAL per statement.
    batch_rows: int = Field(default=10_000, ge=100, le=100_000)
    exports: Annotated[ExportsPolicy, BeforeValidator(_exports_shorthand)] = ExportsPolicy()
    #: Shorthand for ``exports: {plan: ...}``.
    plan: Literal["free", "pro", "enterprise", "unlimited"] | None = None
    elasticsearch: DurationField = UNLIMITED
    legal_hold: bool = False

    @model_validator(mode="after")
    def _one_plan(self) -> RetentionSettings:
        if self.plan is not None and self.exports.plan is not None:
            raise ValueError("give the plan once: either retention.plan or retention.exports.plan")
        return self
