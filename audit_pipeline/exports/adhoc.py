"""An ad-hoc export of any time range and filter, with the daily exports' encoders and layout.

For one auditor, now: events of ``[start, end)`` matching a filter, streamed from the source
in ``(created_at, id)`` order and written as CSV, NDJSON or Parquet byte for byte as the
daily export writes the same events (same header, cells, line ends, Parquet options and
row groups).  Memory holds one source batch, plus one Parquet row group.

A file is written under a temporary name beside it and renamed into place only when every
event has been written, so a crash, an interrupted run or a source failure never leaves a
half-written file under the requested name (an older file of that name stays as it was).
A FIFO, a device or standard output is written in place (:func:`output_file`, which
``audit-pipeline query --output`` uses too) and cannot be taken back: a failure there ends the
stream early and the command exits non-zero.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.core.event_filters import EventFilter
from audit_pipeline.core.schema import ARROW_SCHEMA, COLUMNS
from audit_pipeline.formats.encoding import CSV_HEADER, encode_csv, encode_ndjson
from audit_pipeline.formats.writers import ENCODE_SLICE_ROWS, open_parquet_writer
from audit_pipeline.sources.base import AuditSource, TimeRange

#: ``json`` is the HelloJohn export API's name for the same NDJSON stream.
FORMAT_NAMES = {"csv": "csv", "ndjson": "ndjson", "json": "ndjson", "parquet": "parquet"}
_CREATED_AT = COLUMNS.index("created_at")

#: Called with (events so far, created_at of the last one) after each batch.
Progress = Callable[[int, dt.datetime | None], None]


@dataclass
class RangeExport:
    rows: int = 0
    first_created_at: dt.datetime | None = None
    last_created_at: dt.datetime | None = None


def canonical_format(name: str) -> str:
    try:
        return FORMAT_NAMES[name.lower()]
    except KeyError:
        raise ConfigError(f"--format {name!r} is not one of {', '.join(FORMAT_NAMES)}") from None


def _batches(
    source: AuditSource, time_range: TimeRange, event_filter: EventFilter | None, result: RangeExport, progress: Progress | None
) -> Iterator[pa.RecordBatch]:
    for batch in source.iter_batches(time_range, event_filter=event_filter):
        if batch.num_rows == 0:
            continue
        created = batch.column(_CREATED_AT)
        if result.first_created_at is None:
            result.first_created_at = created[0].as_py()
        result.last_created_at = created[-1].as_py()
        result.rows += batch.num_rows
        yield batch
        if progress is not None:
            progress(result.rows, result.last_created_at)


def write_range(
    source: AuditSource,
    time_range: TimeRange,
    fmt: str,
    out: BinaryIO,
    *,
    event_filter: EventFilter | None = None,
    csv_formula_protection: bool = True,
    parquet_row_group_rows: int = 262_144,
    progress: Progress | None = None,
) -> RangeExport:
    """Stream the matching events of ``time_range`` into ``out`` in ``fmt`` (canonical name)."""
    result = RangeExport()
    batches = _batches(source, time_range, event_filter, result, progress)
    if fmt == "csv":
        out.write(CSV_HEADER)
        for part in _slices(batches):
            out.write(encode_csv(part, csv_formula_protection))
    elif fmt == "ndjson":
        for part in _slices(batches):
            out.write(encode_ndjson(part))
    elif fmt == "parquet":
        _write_parquet(batches, out, parquet_row_group_rows)
    else:
        raise ConfigError(f"unknown export format {fmt!r}")
    return result


def _slices(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Encode a slice at a time, as the daily writers do: transient copies stay small."""
    for batch in batches:
        for start in range(0, batch.num_rows, ENCODE_SLICE_ROWS):
            yield batch.slice(start, ENCODE_SLICE_ROWS)


def _write_parquet(batches: Iterator[pa.RecordBatch], out: BinaryIO, row_group_rows: int) -> None:
    """Row groups cut where the daily writer cuts them, so equal inputs give equal files."""
    writer = open_parquet_writer(out)
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    try:
        for batch in batches:
            pending.append(batch)
            pending_rows += batch.num_rows
            if pending_rows >= row_group_rows:
                table = pa.Table.from_batches(pending, schema=ARROW_SCHEMA)
                writer.write_table(table, row_group_size=len(table))
                pending, pending_rows = [], 0
        if pending:
            table = pa.Table.from_batches(pending, schema=ARROW_SCHEMA)
            writer.write_table(table, row_group_size=len(table))
    finally:
        writer.close()


def writes_in_place(path: Path) -> bool:
    """Whether ``--output path`` is written directly rather than replaced (see :func:`output_file`).

    True for anything that exists and is not a regular file once symlinks are followed (a FIFO, a
    character device, a socket), and for every path under ``/dev`` or ``/proc``: ``/dev/stdout`` or
    ``/proc/self/fd/3`` name a descriptor the shell opened, even when it leads to a regular file.
    """
    if str(path.absolute()).startswith(("/dev/", "/proc/")):
        return True
    try:
        return not stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        return False


def check_output_path(output: str) -> Path:
    """Fail before reading anything if ``--output`` could not be written the way :func:`output_file` will."""
    path = Path(output).expanduser()
    if path.is_dir():
        raise ConfigError(f"--output {output} is a directory; give a file name")
    if writes_in_place(path):
        if not path.exists():
            raise ConfigError(f"--output {output} does not exist")
        if not os.access(path, os.W_OK):
            raise ConfigError(f"--output {output} is not writable")
        return path
    target = Path(os.path.realpath(path))  # a symlink is followed: the file it points to is the one replaced
    shown, directory = (f"--output {output} (a link to {target})", target.parent) if path.is_symlink() else (f"--output {output}", path.parent)
    if not directory.exists():
        raise ConfigError(f"{shown}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise ConfigError(f"{shown}: directory {directory} is not writable")
    return path


@contextlib.contextmanager
def output_file(path: Path) -> Iterator[BinaryIO]:
    """Where every command's ``--output`` goes: the thing the user named, never a replacement for it.

    * A regular file, or a new name: written under a temporary name beside it and renamed onto it
      only when the block completes, so it is complete or untouched (an existing file keeps its mode).
    * A symlink: followed; the file it points to is replaced that way, beside itself, and the link stays.
    * Anything else (a FIFO, ``/dev/null``, ``/dev/stdout``, a terminal): opened and written in place,
      neither created, truncated nor renamed over; like standard output, it cannot be taken back.
    """
    if writes_in_place(path):
        with open(os.open(path, os.O_WRONLY | os.O_APPEND), "wb") as handle:  # O_APPEND: a shell's `>>` stays an append
            yield handle
        return
    with atomic_file(Path(os.path.realpath(path))) as handle:
        yield handle


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A temporary file beside ``path``, renamed onto it only if the block completes."""
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".partial", delete=False)  # noqa: SIM115
    try:
        with handle:
            yield handle  # type: ignore[misc]
            handle.flush()
            os.fsync(handle.fileno())
            with contextlib.suppress(FileNotFoundError):  # replacing a file keeps who may read it
                os.chmod(handle.fileno(), stat.S_IMODE(path.stat().st_mode))
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)
        raise


@contextlib.contextmanager
def spooled_to(stream: BinaryIO) -> Iterator[BinaryIO]:
    """For Parquet to a pipe: the footer comes last, so write a temporary file, then copy it out."""
    with tempfile.TemporaryFile(prefix="audit-export-", suffix=".parquet") as handle:
        yield handle  # type: ignore[misc]
        handle.seek(0)
        shutil.copyfileobj(handle, stream, 8 << 20)
        stream.flush()
