"""Keep a long export's resident memory near its working set: return freed memory to the system.

An export streams tens of megabytes a second through buffers allocated on four threads (the
source read-ahead, CSV, NDJSON and Parquet).  Freed, those buffers stay in the process unless the
allocator hands them back:

- Arrow's default pool (mimalloc) keeps freed pages in per-thread heaps.  The system pool hands
  large buffers straight back to the C library, which is also where ADBC's source batches live.
- ``malloc_trim`` between row groups gives back what glibc's arenas hold but no longer use.

- pyarrow imports pandas (about 40 MB) the first time it converts any Python value, even a scalar, only to
  check whether it is a pandas object; an export never holds one, so pandas is kept from loading meanwhile.

glibc's mmap threshold is deliberately left alone.  Fixing it (``mallopt(M_MMAP_THRESHOLD, …)``)
also fixes the trim threshold at 128 KiB, so every large buffer is mapped, faulted in page by
page and unmapped again: measured on a 2,000,000-row day, 9 s more system time and 7 s more wall
time for about 20 MB less peak (``benchmarks/export_bench.py``, docs/benchmarks.md).
Everything here is best effort: on a platform without glibc it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import importlib.abc
import sys
from collections.abc import Iterator
from typing import Any

import pyarrow as pa


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def freeze_loaded_objects() -> None:
    """Move every object alive now out of the cyclic collector's reach (``gc.freeze``), for objects that
    live as long as the process: imported modules, a code location's definitions.

    Loading Dagster and a code location leaves a few hundred thousand objects, and every full
    collection afterwards walks all of them again (one took 180 ms).  Frozen, they are never
    walked; objects created later are collected as before.  One-off, on an empty day, ``dg launch``
    from start to exit: 4.77 s → 3.98 s (median of five runs each, interleaved).
    """
    gc.freeze()


def release_freed_memory() -> None:
    """Hand the memory the C library holds but no longer uses back to the system (cheap; call between row groups)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class _NotLoaded(importlib.abc.MetaPathFinder):
    """Answers "not installed" for the named modules and their submodules (a finder: a ``None`` in
    ``sys.modules`` would reach Cython's import as ``None``)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if any(fullname == name or fullname.startswith(name + ".") for name in self.names):
            raise ModuleNotFoundError(f"{fullname} is not loaded while events stream", name=fullname)
        return None


@contextlib.contextmanager
def modules_not_loaded(*names: str) -> Iterator[None]:
    """Inside, the named modules are not imported (those already loaded are left alone).

    pyarrow tries pandas again whenever a pandas conversion is asked for, so code running
    after a block keeping pandas out may still use pandas."""
    absent = tuple(name for name in names if name not in sys.modules)
    finder = _NotLoaded(absent) if absent else None
    if finder is not None:
        sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        if finder is not None:
            sys.meta_path.remove(finder)


@contextlib.contextmanager
def returning_memory() -> Iterator[None]:
    """For the duration of an export: Arrow allocates from the system pool and pandas is not loaded;
    the previous pool is restored afterwards."""
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        with modules_not_loaded("pandas"):
            yield
    finally:
        pa.set_memory_pool(previous)
        release_freed_memory()
