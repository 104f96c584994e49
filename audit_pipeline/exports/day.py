"""One day's export: source batches → the three writers → atomic publish to the object store.

Where the objects go (``{fmt}/date=YYYY-MM-DD/audit_logs.*``) is :mod:`audit_pipeline.core.layout`'s;
``day_prefix`` and ``object_key`` are imported here for the modules that still take them from this one.

Nothing is published until every file of the day has been written completely; a failure
anywhere leaves the previous good version of every object in place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.core.event_filters import EventFilter
from audit_pipeline.core.layout import FORMATS, day_prefix, object_key
from audit_pipeline.core.memory import returning_memory
from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.formats.streaming import read_ahead
from audit_pipeline.formats.writers import DayWriters, WrittenFile
from audit_pipeline.sources.base import AuditSource, TimeRange
from audit_pipeline.storage.object_store import ObjectStore

_ID, _CREATED_AT = COLUMNS.index("id"), COLUMNS.index("created_at")


@dataclass(frozen=True)
class PublishedObject:
    format: str
    key: str
    uri: str
    rows: int
    bytes: int
    sha256: str
    content_type: str


@dataclass
class DayExport:
    """What one export of one day produced; the basis for metadata, checks and manifests."""

    day: dt.date
    rows: int
    min_created_at: dt.datetime | None
    max_created_at: dt.datetime | None
    first_id: str | None
    last_id: str | None
    objects: list[PublishedObject] = field(default_factory=list)
    event_filter: EventFilter | None = None

    def for_format(self, fmt: str) -> list[PublishedObject]:
        return [o for o in self.objects if o.format == fmt]


#: Called after every file is written and before anything is published; may add objects to publish.
BeforePublish = Callable[[DayExport, dict[str, WrittenFile]], list[tuple[str, bytes, str]]]


class ExportGuard(Protocol):
    """A rule outside the export that may refuse the day (retention's backfill guard, say)."""

    def check(self) -> None:
        """Raise to refuse; asked before any row is read and again right before publishing."""

    def published(self) -> None:
        """Told once every object of the day is published."""


def export_day(
    source: AuditSource,
    store: ObjectStore,
    day: dt.date,
    options: ExportSettings,
    *,
    event_filter: EventFilter | None = None,
    ndjson_observer: Callable[[memoryview, np.ndarray], None] | None = None,
    before_publish: BeforePublish | None = None,
    fail_before_publish: Callable[[], None] | None = None,
    guard: ExportGuard | None = None,
) -> DayExport:
    """Export the UTC ``day``; returns what was published.

    ``guard`` is checked before the export and again right before publishing, so a refusal
    that arises while the day is read (retention starting to delete it) still stops it.
    """
    store.check_writable()
    if guard is not None:
        guard.check()
    source.check()
    result = DayExport(day=day, rows=0, min_created_at=None, max_created_at=None, first_id=None, last_id=None, event_filter=event_filter)
    with store.staging() as directory, returning_memory():
        writers = DayWriters(
            directory,
            gzip_text=options.gzip,
            csv_formula_protection=options.csv_formula_protection,
            parquet_row_group_rows=options.parquet_row_group_rows,
        )
        if ndjson_observer is not None:
            writers.ndjson_observers.append(ndjson_observer)
        try:
            for batch in read_ahead(source.iter_batches(TimeRange.for_day(day), event_filter=event_filter)):
                if result.first_id is None:
                    result.first_id = batch.column(_ID)[0].as_py()
                    result.min_created_at = batch.column(_CREATED_AT)[0].as_py()
                result.last_id = batch.column(_ID)[-1].as_py()
                result.max_created_at = batch.column(_CREATED_AT)[-1].as_py()
                writers.write(batch)
            written = writers.close()
        except BaseException:
            writers.abort()
            raise
        result.rows = writers.rows
        extra = before_publish(result, written) if before_publish else []
        if guard is not None:
            guard.check()
        if fail_before_publish is not None:
            fail_before_publish()
        for fmt in FORMATS:
            staged = written[fmt]
            key = object_key(fmt, day, staged.name)
            store.publish_file(staged.local_path, key, staged.content_type, staged.content_encoding, sha256=staged.sha256)
            result.objects.append(PublishedObject(fmt, key, store.uri(key), staged.rows, staged.bytes, staged.sha256, staged.content_type))
            # A day holds exactly one object per format: drop a variant left by other settings (gzip on/off).
            for stale in store.list(day_prefix(fmt, day)):
                if stale != key:
                    store.delete(stale)
        for key, data, content_type in extra:
            store.put_bytes(key, data, content_type)
    # Staging is gone (its links to the objects too): a check in this process proves them without reading them back.
    store.note_written({o.key: o.sha256 for o in result.objects})
    if guard is not None:
        guard.published()
    return result


__all__ = ["BeforePublish", "DayExport", "ExportGuard", "PublishedObject", "export_day"]
