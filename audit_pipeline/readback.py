"""Read published objects back: row counts and schema as the files themselves say.

The asset checks use this so that "complete" means what a reader of the object store
would find, not what the writer believed it wrote.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from audit_pipeline.encoding import CSV_HEADER
from audit_pipeline.schema import ARROW_SCHEMA, COLUMNS
from audit_pipeline.storage import ObjectStore
from audit_pipeline.writers import open_text_reader


@dataclass(frozen=True)
class ObjectReport:
    key: str
    rows: int
    schema_ok: bool
    schema_problem: str | None = None


def read_csv_report(store: ObjectStore, key: str) -> ObjectReport:
    with store.open(key) as raw, open_text_reader(raw, key) as plain:
        handle = io.BufferedReader(plain)  # type: ignore[type-var]  # for peek()
        header = handle.readline()
        if header != CSV_HEADER:
            return ObjectReport(key, 0, False, f"header is {header[:200]!r}, expected {CSV_HEADER!r}")
        if not handle.peek(1):  # the header alone: a day without events (pyarrow rejects an empty CSV body)
            return ObjectReport(key, 0, True)
        reader = pacsv.open_csv(
            handle,
            read_options=pacsv.ReadOptions(column_names=list(COLUMNS), block_size=8 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(COLUMNS, pa.string())),
        )
        rows = sum(batch.num_rows for batch in reader)
    return ObjectReport(key, rows, True)


def read_ndjson_report(store: ObjectStore, key: str) -> ObjectReport:
    rows = 0
    first: bytes | None = None
    with store.open(key) as raw, open_text_reader(raw, key) as handle:
        while chunk := handle.read(8 << 20):
            if first is None:
                first = chunk.split(b"\n", 1)[0]
            rows += chunk.count(b"\n")
    if first:
        keys = list(json.loads(first))
        if keys != list(COLUMNS):
            return ObjectReport(key, rows, False, f"first line has keys {keys}, expected {list(COLUMNS)}")
    return ObjectReport(key, rows, True)


def read_parquet_report(store: ObjectStore, key: str) -> ObjectReport:
    with store.open(key) as handle:
        parquet = pq.ParquetFile(handle)
        schema = parquet.schema_arrow
        rows = parquet.metadata.num_rows
    if not schema.equals(ARROW_SCHEMA, check_metadata=False):
        return ObjectReport(key, rows, False, f"schema is {schema}, expected {ARROW_SCHEMA}")
    return ObjectReport(key, rows, True)


READERS = {"csv": read_csv_report, "ndjson": read_ndjson_report, "parquet": read_parquet_report}


@dataclass(frozen=True)
class DayCheck:
    """The outcome of one check on one format of one day, phrased for the operator."""

    passed: bool
    description: str | None
    metadata: dict[str, Any]


def check_completeness(store: ObjectStore, fmt: str, day: dt.date, expected_rows: int) -> DayCheck:
    """Rows in every published object of the day, read back, against the source's count."""
    from audit_pipeline.export import day_prefix

    keys = store.list(day_prefix(fmt, day))
    if not keys:
        return DayCheck(False, f"no {fmt} object for {day}; materialize the partition", {"source_rows": expected_rows})
    counts = {key: READERS[fmt](store, key).rows for key in keys}
    found = sum(counts.values())
    problem = None if found == expected_rows else f"{fmt} holds {found} rows but the source has {expected_rows} for {day}: re-materialize the partition"
    return DayCheck(found == expected_rows, problem, {"source_rows": expected_rows, "exported_rows": found, "objects": counts})


def check_schema(store: ObjectStore, fmt: str, day: dt.date) -> DayCheck:
    """Columns (and, for Parquet, types) of every published object of the day."""
    from audit_pipeline.export import day_prefix

    keys = store.list(day_prefix(fmt, day))
    problems = [f"{r.key}: {r.schema_problem}" for r in (READERS[fmt](store, k) for k in keys) if not r.schema_ok]
    if not keys:
        problems.append(f"no {fmt} object for {day}; materialize the partition")
    return DayCheck(not problems, "; ".join(problems) or None, {"objects_checked": len(keys)})
