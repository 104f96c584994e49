"""Retention's "today": the source database's date, which ``--today`` may move back but never forward.

Ages are counted from the date the rows' own clock gives (``created_at`` comes from it), so a
typo such as ``--today 2099-01-01`` or a machine whose clock runs years ahead cannot make
every day look old enough to delete.  A local clock more than :data:`WARN_SKEW` away from
the database's is reported; more than :data:`REFUSE_SKEW` away, retention refuses to run,
because record and retirement times written from it would be wrong too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from audit_pipeline.config.settings import Settings
from audit_pipeline.core.errors import AuditPipelineError, ConfigError
from audit_pipeline.retention.database import RetentionDatabase
from audit_pipeline.retention.policy import RetentionPolicy

WARN_SKEW = dt.timedelta(minutes=5)
REFUSE_SKEW = dt.timedelta(days=1)


class ClockError(AuditPipelineError):
    """The local clock is too far from the database's to trust the ages it gives."""


@dataclass(frozen=True)
class RetentionDay:
    today: dt.date
    #: The database's clock, or None when the source has none (then the local clock is used).
    database_now: dt.datetime | None
    warnings: tuple[str, ...] = ()


def database_now(settings: Settings, policy: RetentionPolicy) -> dt.datetime | None:
    """The source database's clock: through ``retention.database_url`` when set, else the source itself."""
    if policy.database_url is not None:
        with RetentionDatabase(policy.database_url, settings.source.table) as database:
            return database.now()
    from audit_pipeline.sources.registry import open_source

    with open_source(settings) as source:
        now = source.now()
        return now.astimezone(dt.UTC) if now is not None else None


def retention_day(
    requested: dt.date | None,
    database: dt.datetime | None,
    local: dt.datetime,
    option: str = "--today",
) -> RetentionDay:
    """The day ages are counted from; raises when ``requested`` is after the database's date or the clocks disagree by over a day."""
    warnings: list[str] = []
    local = local.astimezone(dt.UTC)
    if database is None:
        reference = local.date()
        warnings.append("the source has no database clock: ages are counted from the local clock")
    else:
        database = database.astimezone(dt.UTC)
        skew = abs(local - database)
        if skew > REFUSE_SKEW:
            raise ClockError(
                f"the local clock ({local.isoformat(timespec='seconds')}) is {_show(skew)} away from the database clock "
                f"({database.isoformat(timespec='seconds')}), more than a day: nothing was deleted; fix the clock (NTP) and run retention again"
            )
        if skew > WARN_SKEW:
            warnings.append(
                f"the local clock is {_show(skew)} away from the database clock ({database.isoformat(timespec='seconds')}); "
                "ages are counted from the database's date"
            )
        reference = database.date()
    if requested is None:
        return RetentionDay(reference, database, tuple(warnings))
    if requested > reference:
        whose = "the database's date" if database is not None else "today's date"
        raise ConfigError(
            f"{option} {requested} is after {whose} ({reference}): {option} may only move retention back in time (to preview it), "
            "never forward; nothing was deleted"
        )
    return RetentionDay(requested, database, tuple(warnings))


def _show(skew: dt.timedelta) -> str:
    seconds = int(skew.total_seconds())
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    if seconds >= 3_600:
        return f"{seconds / 3_600:.1f} hours"
    return f"{seconds // 60} minutes"
