"""One line instead of a traceback when ``dg launch`` (or ``dagster asset materialize``) is given a day that is no partition.

Dagster's command line validates ``--partition`` before any step runs and lets the error escape as a 57-line
traceback ("All selected assets must have a PartitionsDefinition containing the passed partition key …"), where
``audit-pipeline export-day`` says why in one line.  Those commands load this code location in their own process,
so the code location installs a ``sys.excepthook`` that turns exactly those uncaught errors into the same one line
as ``export-day`` (today, the future, before ``export.partition_start``, not a date) and leaves every other
uncaught error to the previous hook.  A hook runs only when the process is about to exit anyway (exit status 1).
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Callable
from types import TracebackType

_PARTITION_KEY = re.compile(r"containing the passed partition key `([^`]*)`")
_RANGE_POLICY = "Partition ranges with the CLI require all selected assets to have a BackfillPolicy.single_run()"

RANGE_ADVICE = (
    "--partition-range: the daily assets export one day per run (no backfill policy, so each day keeps its own "
    "checks and manifest); run `audit-pipeline export-day FIRST --to LAST`, or launch a backfill of the days in the UI"
)

Hook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


def partition_day_message(key: str, today: dt.date | None = None) -> str | None:
    """Why ``--partition KEY`` names no day to export, as ``export-day`` says it; None when the reason is something else."""
    from audit_pipeline.config.partition_days import check_partition_day
    from audit_pipeline.config.settings import load_settings
    from audit_pipeline.core.errors import AuditPipelineError

    try:
        day = dt.date.fromisoformat(key)
    except ValueError:
        return f"--partition {key!r} is not a day: give it as YYYY-MM-DD (UTC)"
    try:
        check_partition_day(day, load_settings(), what="--partition", today=today)
    except AuditPipelineError as exc:
        return str(exc)
    return None


def one_line(exc: BaseException) -> str | None:
    """The one line for an uncaught error of Dagster's launch command, or None to leave it to the previous hook."""
    text = str(exc)
    if type(exc).__name__ == "DagsterInvalidSubsetError" and (found := _PARTITION_KEY.search(text)):
        return partition_day_message(found.group(1))
    if type(exc).__name__ == "CheckError" and _RANGE_POLICY in text:
        return RANGE_ADVICE
    return None


def install() -> None:
    """Chain the hook in front of the current ``sys.excepthook`` (once per process)."""
    previous: Hook = sys.excepthook
    if getattr(previous, "_audit_pipeline", False):
        return

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> object:
        try:
            line = one_line(exc)
        except Exception:  # a broken configuration, say: Dagster's own traceback then
            line = None
        if line is None:
            return previous(kind, exc, tb)
        print(f"error: {line}", file=sys.stderr)
        return None

    hook._audit_pipeline = True  # type: ignore[attr-defined]
    sys.excepthook = hook
