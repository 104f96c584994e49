"""Memory for the long streaming ``forward`` command, so its peak RSS stays flat and small.

Freed batches go back to the system as in an export (:func:`audit_pipeline.memory.returning_memory`).
And pyarrow imports pandas (about 40 MB) the first time a Python list becomes an array, only to
check whether it is a pandas object; the forwarder never holds one, so pandas is not loaded.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Iterator
from typing import Any

from audit_pipeline.memory import returning_memory


class _PandasNotLoaded(importlib.abc.MetaPathFinder):
    """Answers "not installed" for pandas (a finder: a ``None`` in ``sys.modules`` would reach Cython's import as ``None``)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.split(".")[0] == "pandas":
            raise ModuleNotFoundError("pandas is not loaded while forwarding", name=fullname)
        return None


@contextlib.contextmanager
def streaming_memory() -> Iterator[None]:
    """Inside: freed memory is returned to the system and pandas is not imported.

    pyarrow tries pandas again whenever a pandas conversion is asked for, so code running
    after this block may still use pandas."""
    finder = None if "pandas" in sys.modules else _PandasNotLoaded()
    if finder is not None:
        sys.meta_path.insert(0, finder)
    try:
        with returning_memory():
            yield
    finally:
        if finder is not None:
            sys.meta_path.remove(finder)
