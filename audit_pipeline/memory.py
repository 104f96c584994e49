"""Keep a long export's resident memory near its working set: return freed memory to the system.

An export streams tens of megabytes a second through buffers allocated on four threads (the
source read-ahead, CSV, NDJSON and Parquet).  Freed, those buffers stay in the process unless the
allocator hands them back, and both allocators involved keep them by default:

- Arrow's default pool (mimalloc) keeps freed pages in per-thread heaps.  The system pool hands
  large buffers straight back to the C library, which is also where ADBC's source batches live.
- glibc raises its mmap threshold each time a large block is freed (up to 32 MB), after which blocks
  of a source batch's size come from arenas that fragment and rarely shrink.  A fixed threshold keeps
  such blocks in their own mappings, returned to the system the moment they are freed, and
  ``malloc_trim`` gives back what the arenas still hold.

Measured with ``benchmarks/export_bench.py --command`` (docs/benchmarks.md): about 65 MB less peak RSS
for the same bytes out.  Everything here is best effort: on a platform without glibc it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Iterator

import pyarrow as pa

#: glibc's mallopt parameter number for the mmap threshold (malloc.h: M_MMAP_THRESHOLD).
_M_MMAP_THRESHOLD = -3
#: Blocks at least this large get their own mapping: a source batch column or an encoded slice, not small objects.
MMAP_THRESHOLD_BYTES = 256 * 1024


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def release_freed_memory() -> None:
    """Hand the memory the C library holds but no longer uses back to the system (cheap; call between row groups)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


@contextlib.contextmanager
def returning_memory() -> Iterator[None]:
    """For the duration of an export: Arrow allocates from the system pool, large blocks are mapped on their own.

    The previous Arrow pool is restored afterwards; the fixed mmap threshold stays (it only makes
    large blocks go back to the system sooner).
    """
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)
        release_freed_memory()
