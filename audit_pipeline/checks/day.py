"""One check pass over one exported day: ``complete``, ``schema`` and ``integrity`` for every format.

The writer counts every row and hashes every byte it publishes, and the manifest seals those
figures (or, with ``integrity.enabled: false``, the export records them in its own
materialization metadata).  So a day is proved without parsing it:

- each published object has the size and SHA-256 that were sealed: on S3 one HEAD returns
  the full-object checksum S3 verified on upload; elsewhere one streaming read re-hashes it;
- the sealed row counts equal the source's count, asked once for the whole day;
- the schema is what the object states: the CSV header, the first NDJSON line, the
  Parquet footer (ranged reads of a few KiB);
- the manifest's signature and its link to the previous day hold.

Recomputing the entry chain from every row is deep verification (``audit-pipeline verify``
and the scheduled ``verify_job``), not part of each export.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from audit_pipeline.config.sections.integrity import IntegritySettings
from audit_pipeline.core.errors import StorageError
from audit_pipeline.core.event_filters import EventFilter
from audit_pipeline.core.layout import FORMATS, day_prefix, manifest_key
from audit_pipeline.exports.readback import RangeReader, schema_problem
from audit_pipeline.integrity.manifest import Manifest, ManifestError, read_optional
from audit_pipeline.integrity.report import DayReport
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.integrity.verify import Verifier
from audit_pipeline.sources.base import AuditSource, TimeRange
from audit_pipeline.storage.digest import ObjectDigest
from audit_pipeline.storage.object_store import ObjectStore

CheckName = Literal["complete", "schema", "integrity"]
CHECK_NAMES: tuple[CheckName, ...] = ("complete", "schema", "integrity")


@dataclass(frozen=True)
class SealedObject:
    """An object as its writer described it."""

    format: str
    key: str
    bytes: int
    sha256: str
    rows: int


@dataclass(frozen=True)
class Sealed:
    """What the day should hold and who says so (the manifest, or the export's recorded metadata)."""

    origin: str
    objects: dict[str, list[SealedObject]]
    #: The day's event count where one document states it (the manifest); else per format from ``objects``.
    rows: int | None = None
    problem: str | None = None

    def rows_of(self, fmt: str) -> int:
        return sum(o.rows for o in self.objects.get(fmt, []))


@dataclass
class Verdict:
    passed: bool
    description: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Only the link to another day is wrong (a backfill out of order): a warning, not an error.
    warning: bool = False


def count_for_complete(source: AuditSource) -> Callable[[TimeRange, EventFilter | None], int]:
    """The count ``complete`` compares the sealed rows with: one made independently of the read that exported the day.

    A database's count query is separate from the export's read already.  The HelloJohn API offers
    ``independent_count`` (the range read through its other endpoint): counting the events the
    export's own read yielded would compare a response shortened cleanly with itself, and pass.
    """
    return source.independent_count


def sealed_by_manifest(store: ObjectStore, day: dt.date) -> tuple[Sealed, Manifest | None]:
    key = manifest_key(day)
    raw = read_optional(store, key)
    if raw is None:
        return Sealed(key, {}, problem=f"manifest missing: {key}; materialize the partition"), None
    try:
        manifest = Manifest.from_bytes(raw)
    except ManifestError as exc:
        return Sealed(key, {}, problem=f"manifest altered: {key} is not a valid manifest ({exc})"), None
    objects: dict[str, list[SealedObject]] = {}
    for o in manifest.objects:
        objects.setdefault(o.format, []).append(SealedObject(o.format, o.key, o.bytes, o.sha256, o.rows))
    return Sealed(key, objects, rows=manifest.rows), manifest


def sealed_by_metadata(recorded: dict[str, dict[str, Any] | None]) -> Sealed:
    """From each format's latest materialization metadata (``objects`` and ``dagster/row_count``)."""
    objects: dict[str, list[SealedObject]] = {}
    for fmt, metadata in recorded.items():
        if metadata is None:
            continue
        listed = metadata.get("objects") or []
        rows = int(metadata.get("dagster/row_count", 0))
        for o in listed:  # one object per format and day; the rows are the day's
            objects.setdefault(fmt, []).append(SealedObject(fmt, str(o["key"]), int(o["bytes"]), str(o["sha256"]), rows if len(listed) == 1 else 0))
    return Sealed("the export's materialization metadata", objects)


class _EdgesFirst:
    """The store, answering ranged reads from the ends a digest read already holds: one read per object."""

    def __init__(self, store: ObjectStore, digest: ObjectDigest) -> None:
        self.store = store
        self.digest = digest

    def read_range(self, key: str, start: int, end: int) -> bytes:
        head, tail, size = self.digest.head, self.digest.tail, self.digest.size
        if end <= len(head):
            return head[start:end]
        if start >= size - len(tail) and end <= size:
            offset = size - len(tail)
            return tail[start - offset : end - offset]
        return self.store.read_range(key, start, end)


class DayCheckPass:
    """Every requested check of one day from one listing and one digest per object."""

    def __init__(self, store: ObjectStore, day: dt.date, integrity: IntegritySettings, *, keyring: Keyring | None = None) -> None:
        self.store = store
        self.day = day
        self.integrity = integrity
        self.keyring = keyring
        self.digests: dict[str, ObjectDigest] = {}
        self.listed: dict[str, list[str]] = {}

    # -- what is there --------------------------------------------------------------------------
    def _list(self, formats: Iterable[str]) -> None:
        for fmt in formats:
            self.listed[fmt] = self.store.list(day_prefix(fmt, self.day))

    def _digest_all(self, keys: list[str]) -> dict[str, ObjectDigest | str]:
        """One HEAD (or one streaming read) per object, side by side: hashing releases the GIL."""

        def one(key: str) -> ObjectDigest | str:
            try:
                return self.store.digest(key)
            except StorageError as exc:
                return str(exc)

        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="digest") as pool:
            return dict(zip(keys, pool.map(one, keys), strict=True))

    def _object_problems(self, fmt: str, sealed: Sealed, found: dict[str, ObjectDigest | str]) -> list[str]:
        problems: list[str] = []
        expected = {o.key: o for o in sealed.objects.get(fmt, [])}
        for key, entry in expected.items():
            got = found.get(key)
            if key not in self.listed.get(fmt, []):
                problems.append(f"object missing: {key}")
            elif isinstance(got, str):
                problems.append(f"{key}: {got}")
            elif got is not None and (got.sha256 != entry.sha256 or got.size != entry.bytes):
                problems.append(
                    f"object modified: {key} (SHA-256 {got.sha256[:12]}…, {got.size} bytes; {sealed.origin} says {entry.sha256[:12]}…, {entry.bytes} bytes)"
                )
        for key in self.listed.get(fmt, []):
            if key not in expected:
                problems.append(f"unexpected object, not in {sealed.origin}: {key}")
        return problems

    # -- the pass -------------------------------------------------------------------------------
    def run(
        self,
        wanted: Collection[tuple[str, CheckName]],
        *,
        source_rows: int | Callable[[], int] | None,
        recorded: dict[str, dict[str, Any] | None] | None = None,
    ) -> dict[tuple[str, CheckName], Verdict]:
        """Verdicts for the wanted (format, check) pairs; ``source_rows`` is needed for ``complete``: the count,
        or a callable that waits for it (asked once the objects are hashed, so a count can run meanwhile)."""
        formats = [f for f in FORMATS if any(w[0] == f for w in wanted)]
        self._list(formats)
        manifest: Manifest | None = None
        if self.integrity.enabled:
            sealed, manifest = sealed_by_manifest(self.store, self.day)
        else:
            sealed = sealed_by_metadata(recorded or {})
        needs_objects = any(check != "schema" for _fmt, check in wanted)
        digest_keys = [o.key for f in formats for o in sealed.objects.get(f, []) if o.key in self.listed.get(f, [])] if needs_objects else []
        found = self._digest_all(digest_keys)
        self.digests = {k: v for k, v in found.items() if isinstance(v, ObjectDigest)}
        report = self._signature_and_link() if self.integrity.enabled and any(c == "integrity" for _f, c in wanted) else None
        if callable(source_rows):
            source_rows = source_rows()
        verdicts: dict[tuple[str, CheckName], Verdict] = {}
        for fmt, check in wanted:
            if check == "complete":
                verdicts[(fmt, check)] = self._complete(fmt, sealed, found, source_rows)
            elif check == "schema":
                verdicts[(fmt, check)] = self._schema(fmt)
            else:
                verdicts[(fmt, check)] = self._integrity(fmt, sealed, found, manifest, report)
        return verdicts

    def _objects_metadata(self, fmt: str) -> dict[str, Any]:
        return {
            key: {"bytes": d.size, "sha256": d.sha256, "verified_by": d.source} for key in self.listed.get(fmt, []) if (d := self.digests.get(key)) is not None
        }

    def _complete(self, fmt: str, sealed: Sealed, found: dict[str, ObjectDigest | str], source_rows: int | None) -> Verdict:
        metadata: dict[str, Any] = {"source_rows": source_rows if source_rows is not None else -1, "sealed_by": sealed.origin}
        if sealed.problem:
            return Verdict(False, sealed.problem, metadata)
        if not sealed.objects.get(fmt):
            where = day_prefix(fmt, self.day)
            extra = f" ({', '.join(self.listed.get(fmt, []))} present but not recorded)" if self.listed.get(fmt) else ""
            return Verdict(False, f"no {fmt} object recorded for {self.day} ({where}/){extra}; materialize the partition", metadata)
        problems = self._object_problems(fmt, sealed, found)
        rows = sealed.rows_of(fmt)
        metadata.update(exported_rows=rows, objects=self._objects_metadata(fmt))
        if sealed.rows is not None and sealed.rows != sealed.rows_of(fmt):
            problems.append(f"{sealed.origin} says {sealed.rows} events but {sealed.rows_of(fmt)} for its {fmt} object")
        if source_rows is not None and rows != source_rows:
            problems.append(f"{fmt} holds {rows} rows but the source has {source_rows} for {self.day}: re-materialize the partition")
        return Verdict(not problems, "; ".join(problems) or None, metadata)

    def _schema(self, fmt: str) -> Verdict:
        keys = self.listed.get(fmt, [])
        if not keys:
            return Verdict(False, f"no {fmt} object for {self.day}; materialize the partition", {"objects_checked": 0})
        problems = []
        for key in keys:
            digest = self.digests.get(key)
            size = digest.size if digest is not None else self.store.size(key)
            reader: RangeReader = _EdgesFirst(self.store, digest) if digest is not None and digest.source == "read" else self.store
            problem = schema_problem(reader, fmt, key, size)
            if problem:
                problems.append(f"{key}: {problem}")
        return Verdict(not problems, "; ".join(problems) or None, {"objects_checked": len(keys)})

    def _signature_and_link(self) -> DayReport:
        """Signature and link of the day's manifest (no object is read: ``formats=()``)."""
        keyring = self.keyring or Keyring.build(self.integrity)
        return Verifier(self.store, keyring, formats=()).verify_day(self.day)

    def _integrity(self, fmt: str, sealed: Sealed, found: dict[str, ObjectDigest | str], manifest: Manifest | None, report: DayReport | None) -> Verdict:
        if not self.integrity.enabled:
            return Verdict(True, "integrity.enabled is false: no manifests are written", {"status": "disabled"})
        assert report is not None
        problems = [p.message for p in report.problems]
        object_problems = self._object_problems(fmt, sealed, found) if manifest is not None else []
        if manifest is not None and manifest.object_for(fmt) is None:
            object_problems.append(f"the manifest lists no {fmt} object")
        problems.extend(object_problems)
        warning = report.only_link_problems and not object_problems
        return Verdict(
            not problems,
            "; ".join(problems) or "; ".join(report.notes) or None,
            {
                "status": "FAILED" if problems else report.status,
                "manifest": manifest_key(self.day),
                "events": report.rows if report.rows is not None else -1,
                "problems": [{"kind": p.kind, "message": p.message} for p in report.problems] + [{"kind": "object", "message": m} for m in object_problems],
                "notes": report.notes,
                "objects": self._objects_metadata(fmt),
            },
            warning=warning,
        )
