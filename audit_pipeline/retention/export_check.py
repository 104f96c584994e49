"""Is a day safely exported?  The question asked before any of its rows may be deleted.

Safely exported means: the day's exports exist, hold as many events as the database has
for the day (read back from the objects, not taken from the writer's word), and, with
integrity on, verify exactly as ``audit-pipeline verify`` does with the configured keys
(signature required once a key exists, SHA-256 and the entry chain recomputed from every
object still there; objects retention already retired are accepted as such), with no
problem at all, links included.  The one exception is a day sealed while the day before it
had never been exported (a hole in a backfill): it never linked to anything that could
have been replaced.

Neighbours count too: a forged day can be internally consistent, and only the next day's
link (which recorded the original manifest's SHA-256) gives it away.  So a day is kept when
the day before or after it is in the chain (has a manifest or retirement record) and does
not verify: a failing day stops deletion of itself and of every day its chain evidence
touches.

The same verdict guards every other deletion (:meth:`ExportChecker.held`): a day that fails
verification, or whose neighbour's chain evidence fails, keeps its export objects and its
Elasticsearch index too, and a head that does not check out keeps everything.  Deleting them
would erase the evidence of the tampering and, through a retirement record, turn a FAILED day
into a RETIRED one; the day stays FAILED until an operator resolves it (``rechain --reason``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from audit_pipeline.config.sections.integrity import IntegritySettings
from audit_pipeline.core.layout import FORMATS, day_prefix, manifest_key
from audit_pipeline.exports.readback import check_completeness
from audit_pipeline.integrity.head import Seen
from audit_pipeline.integrity.linking import ONE_DAY
from audit_pipeline.integrity.manifest import Manifest, sha256_hex
from audit_pipeline.integrity.report import DayReport
from audit_pipeline.integrity.retirement import read_retirement
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.integrity.verify import Verifier
from audit_pipeline.retention.export_objects import ID_SOURCES, ExportObject
from audit_pipeline.retention.record import RetentionRecord
from audit_pipeline.storage.object_store import ObjectStore


@dataclass
class ExportEvidence:
    """The outcome for one day: safe (with the object to read ids from) or why not."""

    safe: bool
    reason: str
    exported_rows: int | None = None
    id_object: ExportObject | None = None
    manifest_sha256: str | None = None
    csv_options: dict[str, object] = field(default_factory=dict)
    #: The day (or a neighbour whose chain evidence touches it) fails verification: nothing of it is deleted.
    failed_verification: bool = False


class ExportChecker:
    def __init__(self, store: ObjectStore, integrity: IntegritySettings, formula_protection: bool, cutoffs: dict[str, dt.date | None]) -> None:
        self.store = store
        self.integrity = integrity
        self.formula_protection = formula_protection
        #: Per format, the oldest day whose export must still be there.
        self.cutoffs = cutoffs
        self.keyring = Keyring.build(integrity)
        self._verifier = Verifier(store, self.keyring) if integrity.enabled else None
        self._reports: dict[dt.date, DayReport] = {}
        self._span: tuple[dt.date, dt.date] | None = None
        self._span_known = False
        self._data: set[dt.date] | None = None
        #: Why the store's head does not check out (set by :meth:`check_head`): then nothing is deleted.
        self.head: str | None = None

    def check(self, day: dt.date, database_rows: int, record: RetentionRecord | None) -> ExportEvidence:
        if record is not None and record.status == "deleted":
            return ExportEvidence(
                False,
                f"retention already deleted its {record.exported_rows:,} exported rows; these {database_rows:,} rows were added afterwards and are "
                f"in no export: export the day again (audit-pipeline export-day {day} --force) before they can be deleted",
            )
        # After an interrupted deletion the database holds fewer rows than were exported and checked.
        expected = record.rows_at_start if record is not None else database_rows
        if self._verifier is not None:
            return self._verified(day, expected)
        return self._read_back(day, expected)

    def _verified(self, day: dt.date, expected: int) -> ExportEvidence:
        assert self._verifier is not None
        key = manifest_key(day)
        raw = self.store.read_bytes(key) if self.store.exists(key) else None
        if raw is None:
            if read_retirement(self.store, day) is not None:
                return ExportEvidence(False, f"its exports are retired and only a retirement record is left: nothing to check {expected:,} rows against")
            if any(self.store.list(day_prefix(fmt, day)) for fmt in FORMATS):
                return ExportEvidence(
                    False,
                    f"its objects have no manifest ({key}): export the day again (materialize partition {day}) to seal it",
                    failed_verification=True,
                )
            return ExportEvidence(False, f"not exported: no manifest and no objects (materialize partition {day})")
        report = self._report(day)
        problems = report.problems_besides_gaps
        if problems:
            first = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return ExportEvidence(
                False, f"its exports do not verify: {first.message}{more}; run `audit-pipeline verify --from {day} --to {day}`", failed_verification=True
            )
        manifest = Manifest.from_bytes(raw)
        present = [o for o in manifest.objects if self.store.exists(o.key)]
        if not present:
            return ExportEvidence(False, "every export of the day was already deleted by retention: nothing to check the rows against")
        if manifest.rows != expected:
            return ExportEvidence(
                False,
                f"the database has {expected:,} rows for the day but its verified exports hold {manifest.rows:,}: "
                f"export the day again (materialize partition {day}) before its rows can be deleted",
                manifest.rows,
            )
        neighbour = self._failing_neighbour(day)
        if neighbour is not None:
            return ExportEvidence(False, neighbour, failed_verification=True)
        by_format = {o.format: o for o in present}
        source = next(by_format[f] for f in ID_SOURCES if f in by_format)
        return ExportEvidence(
            True,
            "exports verified, and the neighbouring days' links to it",
            manifest.rows,
            ExportObject(source.format, day, source.key),
            sha256_hex(raw),
            manifest.csv.model_dump(),
        )

    def head_problem(self, seen: Seen | None) -> str | None:
        """Why nothing may be deleted because the store's head shows tampering (deleted newest days, a rolled-back head).

        Remembered in :attr:`head`, which :meth:`held` then gives for every day."""
        if self._verifier is None:
            return None
        head = self._verifier.check_head(seen)
        self.head = (
            None if head.ok else f"the export store's head does not check out ({head.problems[0]}): nothing is deleted until `audit-pipeline verify` passes"
        )
        return self.head

    def held(self, day: dt.date) -> str | None:
        """Why nothing of ``day`` (export objects, Elasticsearch index) may be deleted, or None when it verifies.

        Held: the head does not check out; the day fails verification (an object swapped, edited or
        missing, a manifest missing or altered, a broken link; a day inside the store's range with
        nothing at all is a "manifest missing" as in ``verify``); or a neighbour in the chain fails
        and its chain evidence touches this day.  Days outside every export (before the first,
        after the last) are not held: there is nothing of theirs to verify.  Integrity off: never held.
        """
        if self._verifier is None:
            return None
        if self.head is not None:
            return self.head
        span = self._known_span()
        if span is None or not span[0] <= day <= span[1]:
            return None
        problems = self._report(day).problems_besides_gaps
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return (
                f"its exports do not verify: {problems[0].message}{more}; nothing of the day is deleted until "
                f"`audit-pipeline verify --from {day} --to {day}` passes (if the change was intended: audit-pipeline rechain --from {day} --reason ...)"
            )
        return self._failing_neighbour(day)

    def report(self, day: dt.date) -> DayReport | None:
        """The day's verification (computed once per plan), or None with integrity off."""
        return self._report(day) if self._verifier is not None else None

    def _known_span(self) -> tuple[dt.date, dt.date] | None:
        """First and last day of anything in the store (manifests, retirement records, objects): the range ``verify`` checks."""
        assert self._verifier is not None
        if not self._span_known:
            verifier = self._verifier
            known = sorted({*verifier.manifest_days, *verifier.retired_days, *self._data_days()})
            self._span = (known[0], known[-1]) if known else None
            self._span_known = True
        return self._span

    def _data_days(self) -> set[dt.date]:
        """Days with objects of the daily layout in the store (one listing per format, once)."""
        assert self._verifier is not None
        if self._data is None:
            self._data = set(self._verifier.data_days())
        return self._data

    def _report(self, day: dt.date) -> DayReport:
        """The day's verification, once per plan (each day is also a neighbour of two others)."""
        assert self._verifier is not None
        if day not in self._reports:
            self._reports[day] = self._verifier.verify_day(day)
        return self._reports[day]

    def _failing_neighbour(self, day: dt.date) -> str | None:
        assert self._verifier is not None
        for other, which in ((day + ONE_DAY, "the next day"), (day - ONE_DAY, "the previous day")):
            # Objects without their manifest count too: removing the next day's manifest must not hide this day's forgery.
            if not self._verifier.in_chain(other) and other not in self._data_days():
                continue
            problems = self._report(other).problems_besides_gaps
            if problems:
                first, last = min(day, other), max(day, other)
                return (
                    f"{which}, {other}, does not verify ({problems[0].message}), and its chain evidence touches this day: "
                    f"kept until it does; run `audit-pipeline verify --from {first} --to {last}`"
                )
        return None

    def _read_back(self, day: dt.date, expected: int) -> ExportEvidence:
        present: dict[str, list[str]] = {fmt: self.store.list(day_prefix(fmt, day)) for fmt in FORMATS}
        if not any(present.values()):
            return ExportEvidence(False, f"not exported: no objects under {', '.join(day_prefix(f, day) for f in FORMATS)} (materialize partition {day})")
        for fmt in FORMATS:
            cutoff = self.cutoffs.get(fmt)
            if not present[fmt] and (cutoff is None or day >= cutoff):
                return ExportEvidence(False, f"its {fmt} export is missing ({day_prefix(fmt, day)}/): materialize partition {day} again")
        for fmt in FORMATS:
            if present[fmt]:
                outcome = check_completeness(self.store, fmt, day, expected)
                if not outcome.passed:
                    return ExportEvidence(False, f"its exports are incomplete: {outcome.description}")
        source_format = next(f for f in ID_SOURCES if present[f])
        if len(present[source_format]) != 1:
            return ExportEvidence(False, f"{day_prefix(source_format, day)}/ holds {len(present[source_format])} objects, not one: export the day again")
        return ExportEvidence(
            True,
            "exports read back complete (integrity is off: not verified)",
            expected,
            ExportObject(source_format, day, present[source_format][0]),
            None,
            {"formula_protection": self.formula_protection},
        )
