"""One day of OCSF for Amazon Security Lake: the day's Parquet export → one OCSF Parquet object per class.

Read from the export store, never from the database: the day's ``audit_logs.parquet`` is read in
batches (one row group's worth at a time), mapped by :class:`~audit_pipeline.schemas.ocsf.OcsfMapper`
and appended to one writer per class in a staging folder; each class's rows are cut into row groups of
exactly ``row_group_rows`` rows, so the bytes do not depend on how the input happened to be batched.
Nothing is published until every object is written and the rows add up to the export's footer; then
each object is published atomically (``ObjectStore.publish_file``), objects of an earlier run that this
one did not write are removed (a class that has no events any more), and the manifest goes last.

Layout (Security Lake's custom sources, one per class)::

    ext/{source_name}/region={region}/accountId={account_id}/eventDay={YYYYMMDD}/{source_name}_{YYYYMMDD}.parquet
    manifests/security-lake/eventDay={YYYYMMDD}.json      the day's manifest (outside ext/: no crawler reads it)

A re-run of a day writes the same bytes: the rows come in the export's order (created_at, id), the
schema is fixed (:mod:`.columns`), the row groups are cut by count, and the manifest has no clock in it
(Ed25519 and HMAC signatures are deterministic too).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from audit_pipeline.config.sections.security_lake import SecurityLakeSettings
from audit_pipeline.core.errors import AuditPipelineError, StorageError
from audit_pipeline.core.layout import data_name, object_key
from audit_pipeline.core.schema import COLUMNS, conform
from audit_pipeline.formats.encoding import format_created_at
from audit_pipeline.integrity.manifest import Hex64, SignedDocument
from audit_pipeline.integrity.signer import Signer
from audit_pipeline.schemas import ocsf_table as table
from audit_pipeline.schemas.ocsf import OcsfMapper
from audit_pipeline.security_lake.columns import UNMAPPED, class_schema, mapped_fields
from audit_pipeline.storage.object_store import ObjectStore

CONTENT_TYPE = "application/vnd.apache.parquet"
MANIFEST_FORMAT: Final = "audit_pipeline.security_lake/1"
MANIFEST_PREFIX = "manifests/security-lake"
#: Rows read from the day's export at a time (the mapping holds one batch of events as Python objects).
READ_BATCH_ROWS = 8_192


class SecurityLakeError(AuditPipelineError):
    """The day cannot be written for Security Lake (no export of the day, rows that do not add up)."""


# Layout ---------------------------------------------------------------------------------------------


def event_day(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def day_folder(source_name: str, region: str, account_id: str, day: dt.date) -> str:
    """``ext/{source}/region={region}/accountId={account}/eventDay={YYYYMMDD}`` (no trailing slash)."""
    return f"ext/{source_name}/region={region}/accountId={account_id}/eventDay={event_day(day)}"


def lake_object_key(source_name: str, region: str, account_id: str, day: dt.date) -> str:
    return f"{day_folder(source_name, region, account_id, day)}/{source_name}_{event_day(day)}.parquet"


def lake_manifest_key(day: dt.date) -> str:
    return f"{MANIFEST_PREFIX}/eventDay={event_day(day)}.json"


def export_parquet_key(day: dt.date) -> str:
    """The day's Parquet export in the export store: what this export reads."""
    return object_key("parquet", day, data_name("parquet"))


# Manifest -------------------------------------------------------------------------------------------


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LakeObject(_Entry):
    """One class's object of the day."""

    class_uid: int
    class_name: str
    source_name: str
    key: str
    rows: int
    bytes: int
    sha256: Hex64


class SourceObject(_Entry):
    key: str
    rows: int
    bytes: int
    sha256: Hex64


class LakeManifest(SignedDocument):
    """What a day's Security Lake export published, signed like the day manifests when a signer is configured."""

    format: Literal["audit_pipeline.security_lake/1"] = MANIFEST_FORMAT
    day: dt.date
    ocsf_version: str
    region: str
    account_id: str
    rows: int
    #: The day's Parquet export the objects were mapped from.
    source: SourceObject
    objects: tuple[LakeObject, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> LakeManifest:
        return cls.model_validate_json(data)


# Writing --------------------------------------------------------------------------------------------


class _ClassWriter:
    """One class's Parquet file in staging; row groups of exactly ``group_rows`` rows whatever the input batches."""

    def __init__(self, path: Path, schema: pa.Schema, group_rows: int) -> None:
        self.path = path
        self.schema = schema
        self.group_rows = group_rows
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer = pq.ParquetWriter(
            path,
            schema,
            compression="zstd",
            compression_level=3,
            sorting_columns=pq.SortingColumn.from_ordering(schema, [("time", "ascending")]),
        )

    def add(self, rows: pa.Table) -> None:
        self._pending.append(rows)
        self._pending_rows += rows.num_rows
        self.rows += rows.num_rows
        if self._pending_rows >= self.group_rows:
            combined = pa.concat_tables(self._pending)
            start = 0
            while combined.num_rows - start >= self.group_rows:
                self._writer.write_table(combined.slice(start, self.group_rows), row_group_size=self.group_rows)
                start += self.group_rows
            rest = combined.slice(start)
            self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        if self._pending_rows:
            self._writer.write_table(pa.concat_tables(self._pending), row_group_size=self.group_rows)
        self._pending = []
        self._writer.close()


def unmapped_column(batch: pa.RecordBatch) -> pa.StructArray:
    """The whole HelloJohn event per row, column-wise: the 14 columns as text (``created_at`` as exported)."""
    arrays = [format_created_at(batch.column(i)) if name == "created_at" else batch.column(i) for i, name in enumerate(COLUMNS)]
    return pa.StructArray.from_arrays(arrays, fields=list(UNMAPPED))


def map_to_classes(mapper: OcsfMapper, batch: pa.RecordBatch) -> dict[int, pa.Table]:
    """One Arrow table per OCSF class for a batch of audit events, each in its class's fixed schema."""
    n = batch.num_rows
    if n == 0:
        return {}
    # ``unmapped`` is built from the columns below, so the mapper's copy of the NDJSON line is not needed.
    events = mapper.map_batch(batch, [b"null"] * n)
    unmapped = unmapped_column(batch)
    rows_of: dict[int, list[int]] = {}
    for i, event in enumerate(events):
        rows_of.setdefault(event["class_uid"], []).append(i)
    out: dict[int, pa.Table] = {}
    for class_uid, rows in sorted(rows_of.items()):
        schema = class_schema(class_uid, mapper.version)
        allowed = mapped_fields(class_uid, mapper.version)
        picked: list[dict[str, Any]] = []
        for i in rows:
            event = events[i]
            del event["unmapped"]
            if not event.keys() <= allowed:  # a mapping change the schema does not know: refuse rather than drop it
                extra = ", ".join(sorted(event.keys() - allowed))
                raise SecurityLakeError(f"OCSF class {class_uid} has no Parquet column for {extra}; add it to audit_pipeline/security_lake/columns.py")
            picked.append(event)
        mapped = pa.Table.from_pylist(picked, schema=schema.remove(schema.get_field_index("unmapped")))
        out[class_uid] = pa.Table.from_arrays([*mapped.columns, unmapped.take(pa.array(rows, pa.int32()))], schema=schema)
    return out


def read_export_batches(store: ObjectStore, day: dt.date, batch_rows: int = READ_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The day's Parquet export in batches (streamed from the store: never the whole day in memory)."""
    key = export_parquet_key(day)
    with store.open(key) as handle:
        try:
            parquet = pq.ParquetFile(handle)
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=list(COLUMNS), use_threads=False):
                yield conform(batch)
        except (pa.ArrowException, OSError) as exc:
            raise SecurityLakeError(
                f"{store.uri(key)} is not a Parquet export this version reads ({exc}); materialize audit_logs_parquet for {day} again"
            ) from None


def footer_rows(store: ObjectStore, key: str) -> int:
    """The row count a Parquet object's footer states (a ranged read of the footer, not the rows)."""
    try:
        with store.open(key) as handle:
            return int(pq.read_metadata(handle).num_rows)
    except (pa.ArrowException, OSError) as exc:
        raise SecurityLakeError(f"{store.uri(key)} has no readable Parquet footer ({exc})") from None


@dataclass(frozen=True)
class LakeDay:
    """What one run published for a day."""

    day: dt.date
    rows: int
    manifest: LakeManifest
    manifest_key: str


def lake_store(settings: SecurityLakeSettings) -> ObjectStore:
    """The Security Lake store (its own bucket/prefix, never the export store)."""
    if settings.url is None:
        raise StorageError("security_lake.url is not set; set it to s3://<Security Lake bucket> or a local folder")
    return ObjectStore(
        settings.url,
        endpoint_url=settings.s3_endpoint_url,
        sse=settings.s3_sse,
        kms_key_id=settings.s3_kms_key_id,
        setting="security_lake.url",
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def export_lake_day(
    settings: SecurityLakeSettings,
    source: ObjectStore,
    lake: ObjectStore,
    day: dt.date,
    signer: Signer | None = None,
    *,
    read_batch_rows: int = READ_BATCH_ROWS,
) -> LakeDay:
    """Map the day's Parquet export to OCSF and publish one object per class, then the manifest."""
    if settings.region is None or settings.account_id is None:
        raise SecurityLakeError("security_lake.region and security_lake.account_id must be set")
    region, account = settings.region, settings.account_id
    mapper = OcsfMapper(settings.ocsf, "security_lake.ocsf")
    key = export_parquet_key(day)
    if not source.exists(key):
        raise SecurityLakeError(f"{source.uri(key)} does not exist: materialize audit_logs_parquet for {day} first")
    source_digest = source.digest(key)
    expected_rows = footer_rows(source, key)
    lake.check_writable()
    with lake.staging() as directory:
        writers: dict[int, _ClassWriter] = {}
        try:
            for batch in read_export_batches(source, day, read_batch_rows):
                for class_uid, rows in map_to_classes(mapper, batch).items():
                    if class_uid not in writers:
                        name = settings.source_names[class_uid]
                        writers[class_uid] = _ClassWriter(directory / f"{name}.parquet", class_schema(class_uid, mapper.version), settings.row_group_rows)
                    writers[class_uid].add(rows)
        finally:
            for writer in writers.values():
                writer.close()
        total = sum(w.rows for w in writers.values())
        if total != expected_rows:
            raise SecurityLakeError(f"{day}: {total} OCSF rows from {source.uri(key)}, whose footer says {expected_rows}; nothing was published")
        objects: list[LakeObject] = []
        for class_uid, writer in sorted(writers.items()):
            name = settings.source_names[class_uid]
            target = lake_object_key(name, region, account, day)
            sha256 = _sha256(writer.path)
            size = writer.path.stat().st_size
            lake.publish_file(writer.path, target, CONTENT_TYPE, sha256=sha256)
            objects.append(
                LakeObject(
                    class_uid=class_uid, class_name=table.CLASS_NAMES[class_uid], source_name=name, key=target, rows=writer.rows, bytes=size, sha256=sha256
                )
            )
    published = {o.key for o in objects}
    for name in settings.source_names.values():  # a class with no events this time, or an object of other settings: not the day any more
        for stale in lake.list(day_folder(name, region, account, day)):
            if stale.endswith(".parquet") and stale not in published:
                lake.delete(stale)
    manifest = LakeManifest(
        day=day,
        ocsf_version=mapper.version,
        region=region,
        account_id=account,
        rows=total,
        source=SourceObject(key=key, rows=expected_rows, bytes=source_digest.size, sha256=source_digest.sha256),
        objects=tuple(objects),
    )
    if signer is not None:
        manifest = manifest.model_copy(update={"signature": signer.sign(manifest)})
        for public_key, data, content_type in signer.published_keys():
            lake.put_bytes(public_key, data, content_type)
    manifest_key = lake_manifest_key(day)
    lake.put_bytes(manifest_key, manifest.to_bytes(), "application/json")
    return LakeDay(day, total, manifest, manifest_key)
