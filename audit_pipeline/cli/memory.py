"""Process-wide memory settings for the long streaming commands (``forward``), so peak RSS stays flat.

Measured on 200,000 events (docs/benchmarks.md): the encoded batches are short-lived buffers of
tens of MB; Arrow's default allocator (mimalloc) and glibc's adaptive mmap threshold keep such
freed buffers mapped, so RSS grows by about twice the working set.  Allocating them with the
system allocator and a fixed mmap threshold hands them back to the kernel when freed.  pyarrow
also imports pandas (about 40 MB) the first time a Python list becomes an array, only to check
whether it is a pandas object; the forwarder never holds one.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.abc
import sys
from collections.abc import Iterator
from typing import Any

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
_MMAP_THRESHOLD_BYTES = 256 * 1024


def _fixed_mmap_threshold() -> None:
    """Large blocks straight from mmap, returned on free (glibc only; elsewhere nothing changes)."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


class _PandasNotLoaded(importlib.abc.MetaPathFinder):
    """Answers "not installed" for pandas (a finder: a ``None`` in ``sys.modules`` would reach Cython's import as ``None``)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError("pandas is not loaded while forwarding", name=fullname)
        return None


@contextlib.contextmanager
def streaming_memory() -> Iterator[None]:
    """Inside: Arrow uses the system allocator, large blocks are unmapped when freed, and pandas is not imported.

    pyarrow tries pandas again whenever a pandas conversion is asked for, so code running
    after this block may still use pandas."""
    import pyarrow as pa

    _fixed_mmap_threshold()
    pa.set_memory_pool(pa.system_memory_pool())
    finder = None if "pandas" in sys.modules else _PandasNotLoaded()
    if finder is not None:
        sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        if finder is not None:
            sys.meta_path.remove(finder)
