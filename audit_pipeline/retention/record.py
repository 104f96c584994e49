"""The retention record of a day, ``retention/date=YYYY-MM-DD.json``, and the backfill guard that reads it.

Retention writes the record in the export store *before* it deletes the first row of the
day, and rewrites it with the final count afterwards.  From the moment it exists, an
export of that day would read fewer rows than were exported, and would replace good
exports with an emptier copy; :func:`refuse_emptier_reexport` stops that, unless forced
(rows restored from a backup, say).  A forced re-export whose events differ is recorded in
the day's manifest as a rechain with the reason below, and marks the record ``re-exported``:
the day's exports and rows agree again, so retention may check and delete it anew.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, TypedDict

from audit_pipeline.core.errors import AuditPipelineError
from audit_pipeline.core.layout import retention_record_key as record_key
from audit_pipeline.storage.object_store import ObjectStore

CONTENT_TYPE = "application/json"
FORMAT = "audit_pipeline.retention-record/1"


@dataclass(frozen=True)
class RetentionRecord:
    day: dt.date
    #: ``deleting`` while rows go (or after a crash), ``deleted`` once none of the exported rows is left,
    #: ``re-exported`` once a forced export published the day again (its rows were restored).
    status: Literal["deleting", "deleted", "re-exported"]
    #: Rows of the day in the database when the deletion began, equal to the exported rows.
    rows_at_start: int
    exported_rows: int
    #: The verified object the deleted ids were read from.
    exported_object: str
    #: SHA-256 of the day's manifest when it was checked (None without integrity).
    manifest_sha256: str | None
    policy: str
    started_at: str
    finished_at: str | None = None

    def to_bytes(self) -> bytes:
        document: dict[str, Any] = {"format": FORMAT, **asdict(self), "day": self.day.isoformat()}
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RetentionRecord:
        try:
            document = json.loads(data)
            if document.pop("format", None) != FORMAT:
                raise ValueError(f"not a {FORMAT} document")
            document["day"] = dt.date.fromisoformat(document["day"])
            return cls(**document)
        except (ValueError, TypeError, KeyError) as exc:
            raise AuditPipelineError(f"unreadable retention record ({exc})") from None


def write_record(store: ObjectStore, record: RetentionRecord) -> None:
    store.put_bytes(record_key(record.day), record.to_bytes(), CONTENT_TYPE)


def read_record(store: ObjectStore, day: dt.date) -> RetentionRecord | None:
    key = record_key(day)
    if not store.exists(key):
        return None
    try:
        return RetentionRecord.from_bytes(store.read_bytes(key))
    except AuditPipelineError as exc:
        raise AuditPipelineError(f"{store.uri(key)}: {exc}; it marks {day} as deleted from the database by retention, so it must stay readable") from None


class RetiredDayError(AuditPipelineError):
    """An export would replace the exports of a day whose rows retention deleted."""


def refuse_emptier_reexport(store: ObjectStore, day: dt.date, *, force: bool = False) -> RetentionRecord | None:
    """Raise unless ``day`` may be exported again; returns the record (if any) so a forced export can cite it."""
    record = read_record(store, day)
    if record is None or force or record.status == "re-exported":
        return record
    raise RetiredDayError(
        f"{day}: retention deleted this day's rows from the database ({record.status}, {record.rows_at_start:,} rows exported and checked first, "
        f"started {record.started_at}; {store.uri(record_key(day))}). Exporting it again would replace its exports with an emptier copy, "
        "so nothing was written. If the rows were restored and the day must be exported again, force it: "
        "Dagster config `force: true` on audit_logs_daily_export, or `audit-pipeline export-day DAY --force`"
    )


def forced_reexport_reason(record: RetentionRecord) -> str:
    """What the manifest history says when a forced re-export changes a retired day's events."""
    return f"forced re-export after retention deleted the day's rows from the database (started {record.started_at}, {record.rows_at_start} rows)"


def note_reexport(store: ObjectStore, record: RetentionRecord | None, at: str) -> None:
    """After a forced export published the day again: its exports match the database again."""
    if record is not None and record.status != "re-exported":
        write_record(store, replace(record, status="re-exported", finished_at=at))


class GuardHooks(TypedDict):
    """The guard's keyword argument for ``export_day``, typed so that ``**hooks`` is checked."""

    guard: ReexportGuard


class ReexportGuard:
    """The backfill guard as a hook for ``export_day``: the Dagster asset and the command line pass it in.

    Checked before the export and again right before publishing (retention records the day
    before deleting, so a deletion that begins during the export is caught); after a forced
    export published a retired day, its record is marked ``re-exported``.
    """

    def __init__(self, store: ObjectStore, day: dt.date, *, force: bool = False) -> None:
        self.store, self.day, self.force = store, day, force
        self.retired: RetentionRecord | None = None
        self._checked = False

    def export_hooks(self) -> GuardHooks:
        """Keyword arguments for ``export_day``."""
        return {"guard": self}

    def check(self) -> None:
        record = refuse_emptier_reexport(self.store, self.day, force=self.force)
        if not self._checked:  # the record a forced export cites is the one it started from
            self.retired, self._checked = record, True

    def published(self) -> None:
        note_reexport(self.store, self.retired, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
