"""A DuckDB connection that sees the Parquet archive as one view, ``audit_logs``, wherever it lives.

The archive is read through the project's own :class:`~audit_pipeline.storage.ObjectStore`:
a local folder natively, S3 through the store's s3fs filesystem registered with DuckDB
(``register_filesystem``), so the same endpoint, credentials and settings apply and DuckDB
never downloads an extension (httpfs) at run time.

The view carries the hive partition column ``date`` (a ``DATE``), so ``WHERE date BETWEEN``
prunes whole files before they are opened.  Its columns are bound from a local, empty file
written with the canonical schema rather than from the archive's first object: binding then
touches no remote object and no day outside the query's range.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from audit_pipeline.errors import AuditPipelineError, first_line
from audit_pipeline.layout import data_name, object_key
from audit_pipeline.schema import empty_batch
from audit_pipeline.storage import ObjectStore

PARQUET_PREFIX = "parquet"
PARQUET_NAME = data_name("parquet")
VIEW = "audit_logs"
#: The partition of the empty schema file: a day no export can have.
_ANCHOR_DAY = "0001-01-01"


class QueryError(AuditPipelineError):
    """DuckDB refused or failed the SQL; the message is DuckDB's own first line."""


class EmptyArchiveError(AuditPipelineError):
    """The archive holds no Parquet export yet."""


def duckdb_message(exc: duckdb.Error) -> str:
    """DuckDB's message on one line (its caret diagram below the first line is dropped)."""
    return first_line(exc)


def parquet_key(day: dt.date) -> str:
    return object_key(PARQUET_PREFIX, day, PARQUET_NAME)


def has_parquet(store: ObjectStore) -> bool:
    """Whether at least one day has been exported as Parquet (a listing, no object is read)."""
    return any(key.endswith(".parquet") for key in store.list(PARQUET_PREFIX))


def new_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that never installs or loads an extension on its own, with UTC times."""
    connection = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute("SET enable_progress_bar = false")  # it would print into the result on a terminal
    return connection


def duckdb_path(store: ObjectStore, key: str) -> str:
    """The name DuckDB opens ``key`` by: a local path, or a URL of the filesystem :func:`attach_store` registered."""
    location = store.path(key)
    return location if store.is_local else f"{store.protocol}://{location}"


def archive_glob(store: ObjectStore) -> str:
    """Where DuckDB finds every day's Parquet object."""
    return duckdb_path(store, f"{PARQUET_PREFIX}/date=*/*.parquet")


def attach_store(connection: duckdb.DuckDBPyConnection, store: ObjectStore) -> None:
    """Let DuckDB read the store's objects through the store's own filesystem (S3); local files need nothing."""
    if not store.is_local:
        connection.register_filesystem(store.fs)


def sql_text(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


@contextlib.contextmanager
def open_archive(store: ObjectStore, first: dt.date | None = None, last: dt.date | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection with the view ``audit_logs`` over the archive, optionally limited to ``first``..``last``.

    Raises :class:`EmptyArchiveError` when nothing has been exported yet, so that a user gets
    one clear line instead of DuckDB's "no files found".
    """
    if not has_parquet(store):
        raise EmptyArchiveError(
            f"no Parquet exports under {store.uri(PARQUET_PREFIX)}/ yet; export some days first "
            f"(audit-pipeline export-day YYYY-MM-DD, or the daily_export_job), or point {store.setting} at the archive"
        )
    anchor_root = Path(tempfile.mkdtemp(prefix="audit-query-"))
    connection = new_connection()
    try:
        anchor = anchor_root / f"date={_ANCHOR_DAY}" / PARQUET_NAME
        anchor.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_batches([empty_batch()]), anchor)
        attach_store(connection, store)
        where = []
        if first is not None:
            where.append(f"date >= DATE {sql_text(first.isoformat())}")
        if last is not None:
            where.append(f"date <= DATE {sql_text(last.isoformat())}")
        condition = f" WHERE {' AND '.join(where)}" if where else f" WHERE date <> DATE {sql_text(_ANCHOR_DAY)}"
        connection.execute(
            f"CREATE VIEW {VIEW} AS SELECT * FROM read_parquet([{sql_text(str(anchor))}, {sql_text(archive_glob(store))}],"
            f" hive_partitioning = true, hive_types = {{'date': DATE}}){condition}"
        )
        yield connection
    except duckdb.Error as exc:
        raise QueryError(duckdb_message(exc)) from None
    finally:
        connection.close()
        shutil.rmtree(anchor_root, ignore_errors=True)
