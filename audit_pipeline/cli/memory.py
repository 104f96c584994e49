"""Memory for the long streaming ``forward`` command, so its peak RSS stays flat and small.

Freed batches go back to the system and pandas is not loaded, as in an export
(:func:`audit_pipeline.memory.returning_memory`): pyarrow imports pandas (about 40 MB) the first
time a Python value becomes an array, only to check whether it is a pandas object, and the
forwarder never holds one.  Nor is httpx's command-line client (``httpx._main``), which
``import httpx`` loads when it can, bringing rich and pygments (a few MB) that the sinks' HTTP
client never uses.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Iterator
from typing import Any

from audit_pipeline.memory import returning_memory

_HTTPX_CLI = "httpx._main"


class _HttpxCliNotLoaded(importlib.abc.MetaPathFinder):
    """Answers "not installed" for httpx's command-line client; ``httpx`` then defines a stub ``main``."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname == _HTTPX_CLI:
            raise ModuleNotFoundError(f"{fullname} is not loaded while forwarding", name=fullname)
        return None


@contextlib.contextmanager
def streaming_memory() -> Iterator[None]:
    """Inside: freed memory is returned to the system; pandas and httpx's command-line client are not imported.

    pyarrow tries pandas again whenever a pandas conversion is asked for, so code running
    after this block may still use pandas."""
    finder = None if _HTTPX_CLI in sys.modules else _HttpxCliNotLoaded()
    if finder is not None:
        sys.meta_path.insert(0, finder)
    try:
        with returning_memory():
            yield
    finally:
        if finder is not None:
            sys.meta_path.remove(finder)
