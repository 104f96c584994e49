"""``audit-pipeline query``: run one SQL statement over the archive and stream its result out.

Rows leave DuckDB as Arrow record batches (``fetch_record_batch``) and are written as they
arrive, so a result larger than memory goes to a file or a pipe without being held whole.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

import duckdb
import pyarrow as pa

from audit_pipeline.analysis.archive import QueryError, duckdb_message, open_archive
from audit_pipeline.analysis.output import write_result
from audit_pipeline.storage import ObjectStore

OutputFormat = Literal["table", "csv", "ndjson", "parquet"]
FORMATS: tuple[str, ...] = ("table", "csv", "ndjson", "parquet")
#: Rows per batch fetched from DuckDB: bounds memory whatever the result size.
BATCH_ROWS = 65_536


def stream_batches(connection: duckdb.DuckDBPyConnection, statement: str, batch_rows: int = BATCH_ROWS) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Execute ``statement`` and hand back its schema and a lazy iterator over its record batches."""
    try:
        relation = connection.sql(statement)
        if relation is None:  # a statement without a result (SET, CREATE ...) has already run
            relation = connection.sql("SELECT 'ok' AS status")
        reader = relation.to_arrow_reader(batch_rows)
    except duckdb.Error as exc:
        raise QueryError(duckdb_message(exc)) from None

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except duckdb.Error as exc:
            raise QueryError(duckdb_message(exc)) from None

    return reader.schema, batches()


def _as_json_lines(connection: duckdb.DuckDBPyConnection, statement: str, batch_rows: int) -> tuple[pa.Schema, Iterator[pa.RecordBatch]] | None:
    """The result as one JSON text per row, made by DuckDB itself (``to_json``, C++): NDJSON without a Python object per row.

    None when the statement is not a single query that can be wrapped (``SET ...``, several statements);
    the caller then takes the general path, which also reports the user's own SQL error verbatim.
    """
    query = statement.strip().rstrip(";")
    try:
        return stream_batches(connection, f"SELECT to_json(audit_pipeline_row)::VARCHAR AS line FROM (\n{query}\n) AS audit_pipeline_row", batch_rows)
    except QueryError:
        return None


@contextlib.contextmanager
def _destination(output: str | None) -> Iterator[BinaryIO]:
    """stdout, or a file that appears only once it is complete (written beside it, then renamed)."""
    if output is None or output == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(output)
    staged = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    try:
        with staged.open("wb") as handle:
            yield handle
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)


def run_query(
    store: ObjectStore,
    statement: str,
    *,
    output_format: OutputFormat = "table",
    output: str | None = None,
    first: dt.date | None = None,
    last: dt.date | None = None,
    batch_rows: int = BATCH_ROWS,
) -> int:
    """Run ``statement`` against the view ``audit_logs`` and write the result; returns the row count."""
    with open_archive(store, first, last) as connection:
        lines = _as_json_lines(connection, statement, batch_rows) if output_format == "ndjson" else None
        schema, batches = lines or stream_batches(connection, statement, batch_rows)
        with _destination(output) as sink:
            return write_result(schema, batches, "json_lines" if lines else output_format, sink)
