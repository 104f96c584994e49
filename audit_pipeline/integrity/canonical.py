"""Canonical event lines re-derived from a published object of any format, streamed.

NDJSON objects *are* the canonical lines.  CSV and Parquet rows are parsed back into an
Arrow batch of the canonical schema and re-encoded with :func:`encode_ndjson`, so one chain
definition covers all three formats.  CSV needs one extra step: formula protection put a
``'`` in front of cells starting with ``= + - @`` tab or CR, and that is undone here.  A
value that *itself* starts with ``'`` and one of those characters would be ambiguous, so the
exporter lists such cells in the manifest (:func:`literal_apostrophe_cells`) and they are
kept as they are.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from audit_pipeline.core.schema import ARROW_SCHEMA, COLUMNS, TIMESTAMP_TYPE
from audit_pipeline.formats.csv_records import record_blocks
from audit_pipeline.formats.encoding import CSV_HEADER, encode_ndjson
from audit_pipeline.formats.writers import open_text_reader
from audit_pipeline.integrity.chain import split_lines
from audit_pipeline.storage.object_store import ObjectStore

BLOCK = 8 << 20
_PROTECTED = r"^'[=+\-@\t\r]"
#: Columns whose CSV cell may carry a literal leading apostrophe (metadata is JSON text: never).
_APOSTROPHE_COLUMNS = frozenset(c for c in COLUMNS if c not in ("created_at", "metadata"))
_FORMULA_BYTES = frozenset(b"=+-@")


class CanonicalError(Exception):
    """The object cannot be read back as events; ``row`` is the 1-based event where it stopped."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.row = row


class HashingReader:
    """A read-only file wrapper that hashes every byte read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._digest.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def drain(self) -> None:
        while self.read(BLOCK):
            pass

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def literal_apostrophe_cells(chunk: memoryview | bytes, offsets: Sequence[int], first_row: int) -> list[tuple[int, str]]:
    """Cells of an NDJSON chunk whose value starts with ``'`` and a formula character.

    Rows are 1-based events counted from ``first_row`` (the chunk's first event).  In JSON a
    value's opening quote follows ``:`` directly, and an apostrophe inside a string is never
    preceded by an unescaped quote, so the byte pattern ``:"'`` finds exactly value starts.
    """
    # Vectorised: every apostrophe, then those right after ``:"`` (numpy compares at several GB/s with the
    # GIL released; a bytes.find loop ran at about 1 GB/s holding it, on the NDJSON writer's thread).
    raw = np.frombuffer(chunk, dtype=np.uint8)
    if len(raw) < 4:
        return []
    candidates = np.flatnonzero(raw[2:-1] == 0x27) + 2  # an apostrophe in the last byte starts no formula
    positions = candidates[(raw[candidates - 1] == 0x22) & (raw[candidates - 2] == 0x3A)].tolist()
    if not positions:
        return []
    found: list[tuple[int, str]] = []
    for position in positions:
        following = int(raw[position + 1])
        if following not in _FORMULA_BYTES and not (following == 0x5C and position + 2 < len(raw) and raw[position + 2] in (0x74, 0x72)):
            continue
        head = bytes(chunk[max(0, position - 40) : position - 2])  # ends with the key's closing quote
        name = head[head.rfind(b'"', 0, len(head) - 1) + 1 : -1].decode("utf-8", "replace")
        if name in _APOSTROPHE_COLUMNS:
            row = int(np.searchsorted(np.asarray(offsets), position, side="right")) - 1
            found.append((first_row + row, name))
    return found


# -- NDJSON ---------------------------------------------------------------------------------------
def ndjson_chunks(handle: BinaryIO) -> Iterator[bytes]:
    """Whole-line chunks of an NDJSON stream; a last line without ``\\n`` comes last, as it is."""
    rest = b""
    while block := handle.read(BLOCK):
        data = rest + block
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        rest = data[cut:]
    if rest:
        yield rest


# -- CSV ------------------------------------------------------------------------------------------
def _timestamps(column: pa.Array, first_row: int) -> pa.Array:
    try:
        return pc.cast(column, TIMESTAMP_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for i, value in enumerate(column.to_pylist()):
            try:
                pc.cast(pa.array([value], pa.string()), TIMESTAMP_TYPE)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise CanonicalError(first_row + i, f"created_at {value!r} is not a UTC timestamp") from None
        raise


def csv_batch_to_canonical(
    batch: pa.RecordBatch, first_row: int, formula_protection: bool, literal_cells: Mapping[int, Sequence[str]] | None = None
) -> pa.RecordBatch:
    """Values as the exporter saw them: protection undone, created_at typed."""
    arrays: list[pa.Array] = []
    for name in COLUMNS:
        column = batch.column(name)
        if name == "created_at":
            column = _timestamps(column, first_row)
        elif formula_protection:
            protected = pc.fill_null(pc.match_substring_regex(column, _PROTECTED), False)
            if pc.any(protected).as_py():
                column = pc.if_else(protected, pc.utf8_slice_codeunits(column, 1), column)
        arrays.append(column)
    if formula_protection and literal_cells:
        last = first_row + batch.num_rows
        for row in sorted(r for r in literal_cells if first_row <= r < last):
            for name in literal_cells[row]:
                i = COLUMNS.index(name)
                values = arrays[i].to_pylist()
                original = batch.column(name)[row - first_row].as_py()
                values[row - first_row] = original
                arrays[i] = pa.array(values, pa.string())
    return pa.RecordBatch.from_arrays(arrays, schema=ARROW_SCHEMA)


def _csv_reader(block: bytes) -> pacsv.CSVStreamingReader:
    """Arrow's reader over whole records, with a parse block big enough for all of them (no straddling)."""
    return pacsv.open_csv(
        pa.BufferReader(block),
        read_options=pacsv.ReadOptions(column_names=list(COLUMNS), block_size=max(BLOCK, len(block) + 1), use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(COLUMNS, pa.string()),
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
        ),
    )


def csv_chunks(handle: BinaryIO, formula_protection: bool, literal_cells: Mapping[int, Sequence[str]] | None = None) -> Iterator[memoryview]:
    """Canonical chunks of a CSV stream, any record size: split at record ends first, then parsed."""
    header = handle.read(len(CSV_HEADER))
    if header != CSV_HEADER:
        raise CanonicalError(0, f"the CSV header is {header[:120]!r}, not the 14 audit columns")
    row = 1
    for block in record_blocks(handle, BLOCK):
        try:
            reader = _csv_reader(block)
            batches = list(reader)
        except pa.ArrowInvalid as exc:
            raise CanonicalError(row, f"the CSV does not parse after event {row - 1}: {exc}") from None
        for batch in batches:
            if batch.num_rows:
                yield encode_ndjson(csv_batch_to_canonical(batch, row, formula_protection, literal_cells))
                row += batch.num_rows


# -- Parquet --------------------------------------------------------------------------------------
def parquet_chunks(handle: BinaryIO) -> Iterator[memoryview]:
    try:
        parquet = pq.ParquetFile(handle)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CanonicalError(1, f"not a readable Parquet file: {exc}") from None
    if not parquet.schema_arrow.equals(ARROW_SCHEMA, check_metadata=False):
        raise CanonicalError(1, f"the Parquet schema is {parquet.schema_arrow}, not the canonical audit schema")
    row = 1
    batches = parquet.iter_batches(batch_size=65_536)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError) as exc:
            raise CanonicalError(row, f"the Parquet data does not decode after event {row - 1}: {exc}") from None
        if batch.num_rows:
            yield encode_ndjson(batch)
            row += batch.num_rows


# -- any stored object ----------------------------------------------------------------------------
class StoredObjectReader:
    """Canonical chunks of one published object, and the SHA-256 and size of its stored bytes."""

    def __init__(self, store: ObjectStore, key: str, fmt: str, csv_options: Mapping[str, Any] | None = None) -> None:
        self.store = store
        self.key = key
        self.format = fmt
        options = csv_options or {}
        self.formula_protection = bool(options.get("formula_protection", False))
        cells: dict[int, list[str]] = {}
        for row, name in options.get("literal_apostrophe_cells", []):
            cells.setdefault(int(row), []).append(str(name))
        self.literal_cells = cells
        self.sha256: str | None = None
        self.size: int | None = None

    def chunks(self) -> Iterator[memoryview | bytes]:
        """Stream the canonical chunks; ``sha256``/``size`` are set once the stream is exhausted or fails."""
        if self.format == "parquet":
            yield from self._parquet()
            return
        with self.store.open(self.key) as raw:
            hashing = HashingReader(raw)
            text = open_text_reader(hashing, self.key)  # type: ignore[arg-type]
            try:
                if self.format == "ndjson":
                    yield from ndjson_chunks(text)
                else:
                    yield from csv_chunks(text, self.formula_protection, self.literal_cells)
            except (OSError, EOFError, zlib.error) as exc:  # a damaged gzip stream, a broken connection
                self._finish(hashing)
                raise CanonicalError(1, f"the object cannot be read back: {exc}") from None
            except CanonicalError:
                self._finish(hashing)
                raise
            self._finish(hashing)

    def _finish(self, hashing: HashingReader) -> None:
        hashing.drain()
        self.sha256, self.size = hashing.sha256, hashing.size

    def _parquet(self) -> Iterator[memoryview]:
        with self.store.open(self.key) as raw:
            hashing = HashingReader(raw)
            hashing.drain()
            self.sha256, self.size = hashing.sha256, hashing.size
        with self.store.open(self.key) as handle:
            yield from parquet_chunks(handle)

    def lines(self) -> Iterator[bytes]:
        for chunk in self.chunks():
            yield from split_lines(chunk)
