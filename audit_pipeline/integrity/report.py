"""What verification says of a day: OK, RETIRED or FAILED, with each problem named and classed.

The classes matter to callers: retention trusts a day whose only problem is a backfill ``gap``,
and ``audit-pipeline verify`` tells link problems (a neighbour not exported yet) from damage.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

ProblemKind = Literal["manifest", "signature", "link", "gap", "object", "events"]


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    message: str


@dataclass
class DayReport:
    day: dt.date
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: int | None = None
    retired: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def status(self) -> str:
        if self.problems:
            return "FAILED"
        return "RETIRED" if self.retired else "OK"

    @property
    def problems_besides_gaps(self) -> list[Problem]:
        """Problems other than "the day before was never exported when this day was sealed" (a backfill hole).

        Such a gap says nothing about this day's own events or about a replaced neighbour (the
        day never linked to one), so retention may still trust the day; every other problem,
        links included, means it may not.
        """
        return [p for p in self.problems if p.kind != "gap"]

    @property
    def only_link_problems(self) -> bool:
        """Everything wrong is about links to other days (e.g. the previous day is not exported yet)."""
        return bool(self.problems) and all(p.kind in ("link", "gap") for p in self.problems)

    def add(self, kind: ProblemKind, message: str) -> None:
        self.problems.append(Problem(kind, message))
