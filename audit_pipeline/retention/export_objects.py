"""Exported objects: which are past their format's policy, deleting them so that verify still passes.

Only keys of the daily layout (``{fmt}/date=YYYY-MM-DD/...``) are considered.  Manifests are
kept (they are tiny and later days link to them); before a day's objects go, the integrity
retirement record (``manifests/retired/date=...json``) is written naming every object of
the day retention has deleted so far, so ``audit-pipeline verify`` reports the day as
RETIRED rather than "object missing".  A crash between the record and the deletions
leaves objects that still verify; the next run deletes them.

With integrity on, only the objects of a day that verified are ever retired: a day that fails
(an object swapped or edited, a manifest missing...) keeps its objects and gets no retirement
record, so ``verify`` keeps reporting it FAILED until an operator resolves it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson
import pyarrow.parquet as pq

from audit_pipeline.config.sections.integrity import IntegritySettings
from audit_pipeline.core.errors import AuditPipelineError
from audit_pipeline.core.layout import FORMATS, SUMMARY_PREFIX, day_of_summary_key, manifest_key, parse_data_key
from audit_pipeline.integrity.canonical import StoredObjectReader
from audit_pipeline.integrity.manifest import Manifest
from audit_pipeline.integrity.report import DayReport
from audit_pipeline.integrity.retirement import read_retirement, record_retirement
from audit_pipeline.integrity.signer import Signer
from audit_pipeline.storage.object_store import ObjectStore

#: The order in which an intact object is chosen to read a day's ids from: cheapest first.
ID_SOURCES = ("parquet", "ndjson", "csv")


@dataclass(frozen=True)
class ExportObject:
    format: str
    day: dt.date
    key: str


def daily_objects(store: ObjectStore, fmt: str) -> list[ExportObject]:
    """Every object of the daily layout for ``fmt``, oldest day first."""
    found = []
    for key in store.list(fmt):
        parsed = parse_data_key(key)  # None for date=2024-02-30 or a nested key: not ours to delete
        if parsed is not None and parsed.format == fmt:
            found.append(ExportObject(fmt, parsed.day, key))
    return sorted(found, key=lambda o: (o.day, o.key))


def exported_objects(store: ObjectStore) -> list[ExportObject]:
    """Every object of the daily layout, of every format: one listing per format, shared by the due
    objects and the due summaries of a plan."""
    return [o for fmt in FORMATS for o in daily_objects(store, fmt)]


def due_objects(listed: Iterable[ExportObject], cutoffs: dict[str, dt.date | None]) -> list[ExportObject]:
    """Objects of days before their format's cutoff."""
    due = [o for o in listed if (cutoff := cutoffs.get(o.format)) is not None and o.day < cutoff]
    return sorted(due, key=lambda o: (o.day, FORMATS.index(o.format), o.key))


def due_summaries(store: ObjectStore, cutoffs: dict[str, dt.date | None], listed: Iterable[ExportObject], deleting: list[ExportObject]) -> list[str]:
    """Daily security summaries that go with their day's exports.

    A summary is derived from the day's events (it names actors and countries), so it is kept exactly as
    long as any export of the day: it is due once the day is before every format's cutoff and none of the
    day's ``listed`` objects remains after ``deleting`` (a format kept forever, or a day kept for a
    damaged manifest, keeps its summary)."""
    limits = [cutoff for cutoff in cutoffs.values() if cutoff is not None]
    if not limits:
        return []
    before = min(limits)
    going = {o.key for o in deleting}
    remaining = {o.day for o in listed if o.key not in going}
    due = []
    for key in store.list(SUMMARY_PREFIX):
        day = day_of_summary_key(key)
        if day is not None and day < before and day not in remaining:
            due.append(key)
    return sorted(due)


def retire_objects(
    store: ObjectStore, day: dt.date, keys: list[str], reason: str, integrity: IntegritySettings, signer: Signer | None, verified: DayReport | None
) -> None:
    """Record the retirement, then delete the objects; with integrity on, only for a day that ``verified`` (its report, no problem
    besides a backfill gap): a retirement record must never turn a FAILED day into a RETIRED one."""
    if integrity.enabled:
        if verified is None or verified.day != day or verified.problems_besides_gaps:
            why = verified.problems_besides_gaps[0].message if verified is not None and verified.problems_besides_gaps else "it was not verified"
            raise AuditPipelineError(f"refusing to retire the exports of {day}: {why}; nothing of the day was deleted")
        if not store.exists(manifest_key(day)):
            raise AuditPipelineError(f"refusing to retire the exports of {day}: it has no manifest ({manifest_key(day)}); nothing of the day was deleted")
        manifest = Manifest.from_bytes(store.read_bytes(manifest_key(day)))
        listed = {o.key for o in manifest.objects}
        previous = read_retirement(store, day)
        retired = set(previous.deleted if previous else ()) | set(keys)
        if previous is not None:
            reason = previous.reason if set(keys) <= set(previous.deleted) else f"{previous.reason}; {reason}"
        record_retirement(store, day, sorted(retired & listed), reason, signer)
    for key in keys:
        store.delete(key)


def exported_ids(store: ObjectStore, obj: ExportObject, batch_rows: int, csv_options: dict[str, object]) -> Iterator[list[str]]:
    """The event ids of an exported object, in batches of ``batch_rows``, streamed."""
    if obj.format == "parquet":
        with store.open(obj.key) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows, columns=["id"]):
                yield [str(v) for v in batch.column(0).to_pylist()]
        return
    reader = StoredObjectReader(store, obj.key, obj.format, csv_options)
    ids: list[str] = []
    for line in reader.lines():
        try:
            ids.append(str(orjson.loads(line)["id"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise AuditPipelineError(f"{store.uri(obj.key)}: a line is not an exported event; nothing more of {obj.day} is deleted") from None
        if len(ids) >= batch_rows:
            yield ids
            ids = []
    if ids:
        yield ids
