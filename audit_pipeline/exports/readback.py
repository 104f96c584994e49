"""Read published objects back: row counts and schema as the files themselves say.

Two depths.  :func:`schema_problem` looks only at what states the schema (the CSV header,
the first NDJSON line, the Parquet footer): a few ranged reads, whatever the object's size.
:func:`check_completeness` counts every row, streaming with bounded memory whatever a row's
size; retention uses it when there is no manifest to trust (integrity off).
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from audit_pipeline.core.schema import ARROW_SCHEMA, COLUMNS
from audit_pipeline.formats.csv_records import count_records
from audit_pipeline.formats.encoding import CSV_HEADER
from audit_pipeline.formats.writers import open_text_reader
from audit_pipeline.storage.object_store import ObjectStore

#: The first ranged read of a text object: the CSV header and, usually, the first NDJSON line.
_HEAD_BYTES = 16 << 10
#: A Parquet footer is read from the last 64 KiB; a bigger footer costs one more ranged read.
_TAIL_BYTES = 64 << 10
_BLOCK = 8 << 20


class RangeReader(Protocol):
    """Anything that reads a byte range of an object: the store, or bytes a digest read already holds."""

    def read_range(self, key: str, start: int, end: int) -> bytes: ...


@dataclass(frozen=True)
class ObjectReport:
    key: str
    rows: int
    schema_ok: bool
    schema_problem: str | None = None


# -- the schema, from the few bytes that state it ----------------------------------------------
def _first_line(store: RangeReader, key: str, size: int, limit: int) -> bytes:
    """The object's first (decompressed) line, up to ``limit`` bytes, from ranged reads of its start."""
    gzipped = key.endswith(".gz")
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    line, offset, step = b"", 0, _HEAD_BYTES
    while offset < size and b"\n" not in line and len(line) < limit:
        raw = store.read_range(key, offset, min(size, offset + step))
        offset += len(raw)
        step = min(step * 4, _BLOCK)
        line += inflate.decompress(raw, limit - len(line) + 1) if inflate is not None else raw
    return line.split(b"\n", 1)[0] + (b"\n" if b"\n" in line else b"")


def _csv_schema(store: RangeReader, key: str, size: int) -> str | None:
    header = _first_line(store, key, size, len(CSV_HEADER))
    if header != CSV_HEADER:
        return f"header is {header[:200]!r}, expected {CSV_HEADER!r}"
    return None


def _ndjson_schema(store: RangeReader, key: str, size: int) -> str | None:
    first = _first_line(store, key, size, 1 << 62)
    if not first:
        return None  # a day without events
    try:
        keys = list(json.loads(first))
    except (ValueError, TypeError) as exc:
        return f"first line is not a JSON object ({exc})"
    if keys != list(COLUMNS):
        return f"first line has keys {keys}, expected {list(COLUMNS)}"
    return None


def parquet_footer(store: RangeReader, key: str, size: int) -> pq.FileMetaData:
    """The Parquet footer alone (schema, row count, row groups), from one or two ranged reads of the end."""
    if size < 12:
        raise ValueError(f"{size} bytes is too short for a Parquet file")
    tail = store.read_range(key, max(0, size - _TAIL_BYTES), size)
    if tail[-4:] != b"PAR1":
        raise ValueError("it does not end with the Parquet magic bytes")
    footer_length = struct.unpack("<I", tail[-8:-4])[0]
    if footer_length + 8 > len(tail):
        if footer_length + 8 > size:
            raise ValueError("its footer length points before the start of the file")
        tail = store.read_range(key, size - footer_length - 8, size)
    # The reader only needs the footer; a leading magic makes the buffer a complete (empty-bodied) file.
    return pq.read_metadata(pa.BufferReader(b"PAR1" + tail[-footer_length - 8 :]))


def _parquet_schema(store: RangeReader, key: str, size: int) -> str | None:
    try:
        schema = parquet_footer(store, key, size).schema.to_arrow_schema()
    except (pa.ArrowException, OSError, ValueError) as exc:
        return f"not a readable Parquet file ({exc})"
    if not schema.equals(ARROW_SCHEMA, check_metadata=False):
        return f"schema is {schema}, expected {ARROW_SCHEMA}"
    return None


_SCHEMA_PROBES = {"csv": _csv_schema, "ndjson": _ndjson_schema, "parquet": _parquet_schema}


def schema_problem(store: RangeReader, fmt: str, key: str, size: int) -> str | None:
    """What is wrong with the object's columns (and, for Parquet, types), or None; reads only their statement."""
    try:
        return _SCHEMA_PROBES[fmt](store, key, size)
    except (OSError, EOFError, zlib.error) as exc:
        return f"cannot be read back ({exc})"


# -- every row, streamed -----------------------------------------------------------------------
def read_csv_report(store: ObjectStore, key: str) -> ObjectReport:
    with store.open(key) as raw, open_text_reader(raw, key) as plain:
        header = plain.read(len(CSV_HEADER))
        if header != CSV_HEADER:
            return ObjectReport(key, 0, False, f"header is {header[:200]!r}, expected {CSV_HEADER!r}")
        rows = count_records(plain, _BLOCK)
    return ObjectReport(key, rows, True)


def read_ndjson_report(store: ObjectStore, key: str) -> ObjectReport:
    rows = 0  # complete lines: a cut-off last line is damage, not a row
    first = b""
    with store.open(key) as raw, open_text_reader(raw, key) as handle:
        while chunk := handle.read(_BLOCK):
            if b"\n" not in first and len(first) < _HEAD_BYTES:
                first += chunk[:_HEAD_BYTES]
            rows += chunk.count(b"\n")
    line = first.split(b"\n", 1)[0]
    if line and b"\n" in first:
        try:
            keys = list(json.loads(line))
        except (ValueError, TypeError) as exc:
            return ObjectReport(key, rows, False, f"first line is not a JSON object ({exc})")
        if keys != list(COLUMNS):
            return ObjectReport(key, rows, False, f"first line has keys {keys}, expected {list(COLUMNS)}")
    return ObjectReport(key, rows, True)


def read_parquet_report(store: ObjectStore, key: str) -> ObjectReport:
    metadata = parquet_footer(store, key, store.size(key))
    schema = metadata.schema.to_arrow_schema()
    if not schema.equals(ARROW_SCHEMA, check_metadata=False):
        return ObjectReport(key, metadata.num_rows, False, f"schema is {schema}, expected {ARROW_SCHEMA}")
    return ObjectReport(key, metadata.num_rows, True)


READERS = {"csv": read_csv_report, "ndjson": read_ndjson_report, "parquet": read_parquet_report}


@dataclass(frozen=True)
class DayCheck:
    """The outcome of one check on one format of one day, phrased for the operator."""

    passed: bool
    description: str | None
    metadata: dict[str, Any]


def check_completeness(store: ObjectStore, fmt: str, day: dt.date, expected_rows: int) -> DayCheck:
    """Rows in every published object of the day, read back, against the source's count."""
    from audit_pipeline.core.layout import day_prefix

    keys = store.list(day_prefix(fmt, day))
    if not keys:
        return DayCheck(False, f"no {fmt} object for {day}; materialize the partition", {"source_rows": expected_rows})
    counts = {key: READERS[fmt](store, key).rows for key in keys}
    found = sum(counts.values())
    problem = None if found == expected_rows else f"{fmt} holds {found} rows but the source has {expected_rows} for {day}: re-materialize the partition"
    return DayCheck(found == expected_rows, problem, {"source_rows": expected_rows, "exported_rows": found, "objects": counts})


def check_schema(store: ObjectStore, fmt: str, day: dt.date) -> DayCheck:
    """Columns (and, for Parquet, types) of every published object of the day, from the bytes that state them."""
    from audit_pipeline.core.layout import day_prefix

    keys = store.list(day_prefix(fmt, day))
    problems = [f"{key}: {problem}" for key in keys if (problem := schema_problem(store, fmt, key, store.size(key)))]
    if not keys:
        problems.append(f"no {fmt} object for {day}; materialize the partition")
    return DayCheck(not problems, "; ".join(problems) or None, {"objects_checked": len(keys)})
