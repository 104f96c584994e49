"""Writing a streamed query result as an aligned table, CSV, NDJSON or Parquet.

Each file writer consumes record batches one at a time; none holds the whole result.  The
table takes its column widths from every row (cells are cut at :data:`MAX_CELL` characters),
so it holds the rows it prints: ``query`` bounds them (``--table-rows``).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from audit_pipeline.analysis.archive import QueryError
from audit_pipeline.core.errors import first_line

MAX_CELL = 60
NULL_TEXT = "NULL"
#: Rows turned into Python objects at once when writing NDJSON.
NDJSON_SLICE = 4_096


def _cell(value: Any) -> str:
    if value is None:
        return NULL_TEXT
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, float):
        return repr(value)
    text = str(value).replace("\n", "\\n").replace("\r", "\\r").replace("\t", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _numeric(field: pa.Field) -> bool:
    return pa.types.is_integer(field.type) or pa.types.is_floating(field.type) or pa.types.is_decimal(field.type)


def write_table(schema: pa.Schema, batches: Iterable[pa.RecordBatch], out: BinaryIO) -> int:
    """An aligned text table like DuckDB's own, then ``(N rows)``.

    Column widths come from every row, so the caller bounds the rows (``query`` refuses a table
    above ``--table-rows``): a table is for reading, a large result belongs in CSV.
    """
    right = [_numeric(f) for f in schema]
    columns: list[list[str]] = [[] for _ in schema]
    for batch in batches:
        for i in range(batch.num_columns):
            columns[i].extend(_cell(v) for v in batch.column(i).to_pylist())
    rows = len(columns[0]) if columns else 0
    widths = [max([len(name), *(len(t) for t in column)]) for name, column in zip(schema.names, columns, strict=True)]

    def line(cells: list[str]) -> bytes:
        padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return ("  ".join(padded).rstrip() + "\n").encode()

    if rows:
        out.write(line([n.ljust(w) for n, w in zip(schema.names, widths, strict=True)]))
        out.write(line(["-" * w for w in widths]))
        for r in range(rows):
            out.write(line([column[r] for column in columns]))
    else:
        out.write(("  ".join(schema.names) + "\n").encode())
    out.write(f"({rows} row{'s' if rows != 1 else ''})\n".encode())
    return rows


def write_csv(schema: pa.Schema, batches: Iterable[pa.RecordBatch], out: BinaryIO) -> int:
    rows = 0
    try:
        with pacsv.CSVWriter(out, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as exc:
        raise QueryError(f"the result cannot be written as CSV ({first_line(exc)}); use --format ndjson or parquet") from None
    return rows


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    raise TypeError(type(value).__name__)


def write_ndjson(schema: pa.Schema, batches: Iterable[pa.RecordBatch], out: BinaryIO) -> int:
    rows = 0
    for batch in batches:
        for start in range(0, batch.num_rows, NDJSON_SLICE):  # Python objects for a slice at a time, not the batch
            part = batch.slice(start, NDJSON_SLICE)
            out.write(b"".join(orjson.dumps(row, default=_json_default, option=orjson.OPT_APPEND_NEWLINE) for row in part.to_pylist()))
        rows += batch.num_rows
    return rows


def write_json_lines(schema: pa.Schema, batches: Iterable[pa.RecordBatch], out: BinaryIO) -> int:
    """Batches of one column of JSON texts (one per row), written as NDJSON straight from Arrow's buffer."""
    rows = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        lines = pc.binary_join_element_wise(batch.column(0), "", "\n")
        kind = np.int64 if pa.types.is_large_string(lines.type) else np.int32
        offsets = np.frombuffer(lines.buffers()[1], dtype=kind)[lines.offset : lines.offset + len(lines) + 1]
        out.write(memoryview(lines.buffers()[2])[int(offsets[0]) : int(offsets[-1])])
        rows += batch.num_rows
    return rows


def write_parquet(schema: pa.Schema, batches: Iterable[pa.RecordBatch], out: BinaryIO) -> int:
    rows = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


_WRITERS = {"table": write_table, "csv": write_csv, "ndjson": write_ndjson, "json_lines": write_json_lines, "parquet": write_parquet}


def write_result(schema: pa.Schema, batches: Iterator[pa.RecordBatch], output_format: str, out: BinaryIO) -> int:
    """Write every batch in ``output_format``; returns the number of rows written."""
    return _WRITERS[output_format](schema, batches, out)
