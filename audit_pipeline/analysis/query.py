"""``audit-pipeline query``: run one SQL statement over the archive and stream its result out.

The statement runs on a sealed connection (:func:`~audit_pipeline.analysis.archive.open_archive`):
it reads the view ``audit_logs`` and nothing else, and what DuckDB refuses is reported as refused.
Exactly one statement is run: an empty text, or several statements, are refused before the archive
is opened (DuckDB's own parser counts them).

Rows leave DuckDB as Arrow record batches (``fetch_record_batch``) and are written as they
arrive, so a result larger than memory goes to a file or a pipe without being held whole.  The
aligned table is for reading on a terminal: it is refused above ``table_rows`` rows, before
anything is printed, with a hint to write CSV instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

import duckdb
import pyarrow as pa

from audit_pipeline.analysis.archive import VIEW, QueryError, duckdb_message, open_archive
from audit_pipeline.analysis.output import write_result
from audit_pipeline.exports.adhoc import check_output_path, output_file
from audit_pipeline.storage.object_store import ObjectStore

OutputFormat = Literal["table", "csv", "ndjson", "parquet"]
OUTPUT_FORMATS: tuple[str, ...] = ("table", "csv", "ndjson", "parquet")
#: Rows per batch fetched from DuckDB: bounds memory whatever the result size.
BATCH_ROWS = 65_536
#: The most rows ``--format table`` prints; a larger result is refused (``--table-rows`` changes it).
TABLE_ROWS = 10_000


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


#: Refusals by the sealed connection: a file, directory, extension or setting it may not touch.
_REFUSALS = ("Permission Error", "the configuration has been locked", "disabled through configuration")


def one_statement(sql: str) -> duckdb.Statement:
    """The single statement ``sql`` holds, as DuckDB parses it; anything else is a :class:`QueryError`."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(duckdb_message(exc)) from None
    if not statements:
        raise QueryError('the SQL is empty: give one statement, e.g. audit-pipeline query "SELECT count(*) FROM audit_logs"')
    if len(statements) > 1:
        kinds = ", ".join(statement.type.name for statement in statements)
        raise QueryError(f"the SQL holds {len(statements)} statements ({kinds}); give one per command, or combine them into one query")
    return statements[0]


def explain(statement: duckdb.Statement, message: str) -> str:
    """DuckDB's message, said to be a refusal when the sealed connection refused what the statement tried."""
    if any(marker in message for marker in _REFUSALS):
        return f"{statement.type.name} refused: {message} (audit-pipeline query is read-only: it reads the view {VIEW} and nothing else)"
    return message


@contextlib.contextmanager
def _destination(output: str | None) -> Iterator[BinaryIO]:
    """stdout, or ``--output`` as every command writes it (:func:`~audit_pipeline.exports.adhoc.output_file`)."""
    if output is None or output == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with output_file(Path(output).expanduser()) as handle:
        yield handle


def run_query(
    store: ObjectStore,
    statement: str,
    *,
    output_format: OutputFormat = "table",
    output: str | None = None,
    first: dt.date | None = None,
    last: dt.date | None = None,
    batch_rows: int = BATCH_ROWS,
    table_rows: int = TABLE_ROWS,
) -> int:
    """Run ``statement`` against the view ``audit_logs`` and write the result; returns the row count."""
    parsed = one_statement(statement)
    if output not in (None, "-"):
        check_output_path(output)
    if output_format == "table":
        batch_rows = min(batch_rows, table_rows + 1)
    try:
        with open_archive(store, first, last) as connection:
            lines = _as_json_lines(connection, statement, batch_rows) if output_format == "ndjson" else None
            schema, batches = lines or stream_batches(connection, statement, batch_rows)
            if output_format == "table":  # refused above table_rows before anything is written
                batches = iter(at_most(batches, table_rows))
            with _destination(output) as sink:
                return write_result(schema, batches, "json_lines" if lines else output_format, sink)
    except QueryError as exc:
        raise QueryError(explain(parsed, str(exc))) from None


def at_most(batches: Iterator[pa.RecordBatch], table_rows: int) -> list[pa.RecordBatch]:
    """Every batch, if they hold at most ``table_rows`` rows together; otherwise a refusal naming the way out."""
    kept: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        if rows > table_rows:
            raise QueryError(
                f"the result has more than {table_rows:,} rows, more than --format table shows (--table-rows); "
                "write it with --format csv (or ndjson, parquet), e.g. --format csv --output result.csv, or add a LIMIT"
            )
        kept.append(batch)
    return kept
