"""Memory for the long streaming ``forward`` command, so its peak RSS stays flat and small.

Freed batches go back to the system and pandas is not loaded, as in an export
(:func:`audit_pipeline.memory.returning_memory`): pyarrow imports pandas (about 40 MB) the first
time a Python value becomes an array, only to check whether it is a pandas object, and the
forwarder never holds one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from audit_pipeline.memory import returning_memory


@contextlib.contextmanager
def streaming_memory() -> Iterator[None]:
    """Inside: freed memory is returned to the system and pandas is not imported.

    pyarrow tries pandas again whenever a pandas conversion is asked for, so code running
    after this block may still use pandas."""
    with returning_memory():
        yield
