"""A DuckDB connection that sees the Parquet archive as one view, ``audit_logs``, and can do nothing else.

``audit-pipeline query`` runs an analyst's SQL, so the connection is sealed with DuckDB's own settings
rather than by inspecting the SQL: DuckDB itself never opens a file.  The archive is handed to it as a
pyarrow dataset of the day objects (read through the project's :class:`~audit_pipeline.storage.object_store.ObjectStore`:
a local folder natively, S3 through the store's s3fs filesystem), registered as the view; then
``enable_external_access`` is turned off (no ``COPY … TO``, ``ATTACH``, ``read_text``/``read_csv`` of a path,
``INSTALL``; extensions neither load nor auto-load), Python replacement scans are off, and
``lock_configuration`` forbids any ``SET`` that would undo it.  DuckDB's ``allowed_paths`` and
``allowed_directories`` are not used for the archive on purpose: they allow writing as well as reading
(a ``COPY … TO`` an allowed path overwrites it), while a dataset can only be read.  The one directory
DuckDB may still write is its own spill directory, a private temporary folder removed afterwards.

The view carries the hive partition column ``date`` (a ``DATE``), so ``WHERE date BETWEEN`` prunes whole
files before they are opened (DuckDB pushes the condition into the dataset).  Its columns come from the
canonical schema, not from an object: binding touches no remote object and no day outside the query's range.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from audit_pipeline.core.errors import AuditPipelineError, first_line
from audit_pipeline.core.layout import data_name, object_key
from audit_pipeline.core.schema import ARROW_SCHEMA
from audit_pipeline.storage.object_store import ObjectStore

PARQUET_PREFIX = "parquet"
PARQUET_NAME = data_name("parquet")
VIEW = "audit_logs"
#: A day's Parquet object in the export layout; anything else under ``parquet/`` is not part of the view.
_DAY_OBJECT = re.compile(rf"^{PARQUET_PREFIX}/date=(\d{{4}}-\d{{2}}-\d{{2}})/[^/]+\.parquet$")
#: Rows per batch read from the archive's files (see :class:`ArchiveDataset`).
SCAN_BATCH_ROWS = 8_192
#: What the view shows: the exported columns, then the day of the partition.
VIEW_SCHEMA = ARROW_SCHEMA.append(pa.field("date", pa.date32()))


class QueryError(AuditPipelineError):
    """DuckDB refused or failed the SQL; the message is DuckDB's own first line."""


class EmptyArchiveError(AuditPipelineError):
    """The archive holds no Parquet export yet."""


def duckdb_message(exc: duckdb.Error) -> str:
    """DuckDB's message on one line (its caret diagram below the first line is dropped)."""
    return first_line(exc)


def parquet_key(day: dt.date) -> str:
    return object_key(PARQUET_PREFIX, day, PARQUET_NAME)


def day_objects(store: ObjectStore) -> list[tuple[dt.date, str]]:
    """Every day's Parquet object as (day, key), from one listing; no object is read."""
    found = []
    for key in store.list(PARQUET_PREFIX):
        match = _DAY_OBJECT.match(key)
        if match:
            with contextlib.suppress(ValueError):  # date=2024-02-30 is no day of the archive
                found.append((dt.date.fromisoformat(match.group(1)), key))
    return found


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


def attach_store(connection: duckdb.DuckDBPyConnection, store: ObjectStore) -> None:
    """Let DuckDB read the store's objects through the store's own filesystem (S3); local files need nothing."""
    if not store.is_local:
        connection.register_filesystem(store.fs)


def sql_text(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


class ArchiveDataset(pads.FileSystemDataset):
    """The archive's day objects as a dataset whose scans read ahead little, so memory stays flat.

    DuckDB scans a registered dataset through ``type(dataset).scanner(dataset, columns=…, filter=…)``
    with pyarrow's defaults (batches of 131,072 rows, 16 batches and 4 files read ahead): about
    1 GB for ``SELECT *`` of 2,000,000 events.  Small batches, read one file at a time, keep it near
    what DuckDB's own Parquet reader takes (see docs/benchmarks.md#querying-the-archive).
    """

    def scanner(self, *args: Any, **kwargs: Any) -> pads.Scanner:
        kwargs.setdefault("batch_size", SCAN_BATCH_ROWS)
        kwargs.setdefault("batch_readahead", 2)
        kwargs.setdefault("fragment_readahead", 1)
        return super().scanner(*args, **kwargs)


def archive_dataset(store: ObjectStore, objects: list[tuple[dt.date, str]]) -> ArchiveDataset:
    """The day objects ``objects`` (day, key) as one dataset whose column ``date`` is each object's day.

    Each file carries its day as a partition expression, so a condition on ``date`` that DuckDB
    pushes down skips a day's object without opening it.
    """
    filesystem: pafs.FileSystem = pafs.LocalFileSystem() if store.is_local else pafs.PyFileSystem(pafs.FSSpecHandler(store.fs))
    parquet = pads.ParquetFileFormat()
    fragments = [
        parquet.make_fragment(store.path(key), filesystem, partition_expression=pads.field("date") == pa.scalar(day, pa.date32())) for day, key in objects
    ]
    return ArchiveDataset(fragments, VIEW_SCHEMA, parquet, filesystem)


def seal(connection: duckdb.DuckDBPyConnection, spill_directory: str) -> None:
    """From here on the connection reads what is registered with it and touches no file, setting or extension.

    ``lock_configuration`` comes last: every later ``SET``/``RESET`` (``enable_external_access = true``,
    ``lock_configuration = false``, ``allowed_directories`` …) is refused by DuckDB.
    """
    connection.execute(f"SET temp_directory = {sql_text(spill_directory)}")  # DuckDB may write here (and only here)
    connection.execute("SET allowed_directories = []")
    connection.execute("SET allowed_paths = []")
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")


@contextlib.contextmanager
def open_archive(store: ObjectStore, first: dt.date | None = None, last: dt.date | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A sealed connection (see :func:`seal`) with the view ``audit_logs`` over the archive, optionally limited to ``first``..``last``.

    Raises :class:`EmptyArchiveError` when nothing has been exported yet, so that a user gets
    one clear line instead of an empty result.
    """
    objects = day_objects(store)
    if not objects:
        raise EmptyArchiveError(
            f"no Parquet exports under {store.uri(PARQUET_PREFIX)}/ yet; export some days first "
            f"(audit-pipeline export-day YYYY-MM-DD, or the daily_export_job), or point {store.setting} at the archive"
        )
    spill = tempfile.mkdtemp(prefix="audit-query-")
    connection = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False, "python_enable_replacements": False})
    try:
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute("SET enable_progress_bar = false")  # it would print into the result on a terminal
        chosen = [(day, key) for day, key in objects if (first is None or day >= first) and (last is None or day <= last)]
        connection.register(VIEW, archive_dataset(store, chosen))  # days outside --from/--to are not in the view at all
        seal(connection, spill)
        yield connection
    except duckdb.Error as exc:
        raise QueryError(duckdb_message(exc)) from None
    finally:
        connection.close()
        shutil.rmtree(spill, ignore_errors=True)
