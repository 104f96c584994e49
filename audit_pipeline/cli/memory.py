"""Memory for the long streaming ``forward`` command, so its peak RSS stays flat and small.

Freed batches go back to the system and pandas is not loaded, as in an export
(:func:`audit_pipeline.core.memory.returning_memory`): pyarrow imports pandas (about 40 MB) the first
time a Python value becomes an array, only to check whether it is a pandas object, and the
forwarder never holds one.  Nor is httpx's command-line client (``httpx._main``), which
``import httpx`` loads when it can, bringing rich and pygments (a few MB) that the sinks' HTTP
client never uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from audit_pipeline.core.memory import modules_not_loaded, returning_memory

#: httpx's command-line client; without it ``httpx`` defines a stub ``main``.
_HTTPX_CLI = "httpx._main"


@contextlib.contextmanager
def streaming_memory() -> Iterator[None]:
    """Inside: freed memory is returned to the system; pandas and httpx's command-line client are not imported.

    pyarrow tries pandas again whenever a pandas conversion is asked for, so code running
    after this block may still use pandas."""
    with modules_not_loaded(_HTTPX_CLI), returning_memory():
        yield
