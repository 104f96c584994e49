"""The ``audit-pipeline`` command: the same core as the Dagster definitions, without a daemon.

Each sub-command lives in its own module and registers itself on :data:`main`.
"""

from audit_pipeline.cli import (
    adhoc_export,  # noqa: F401  (registers commands)
    config,  # noqa: F401  (registers commands)
    days,  # noqa: F401  (registers commands)
    exports,  # noqa: F401  (registers commands)
    forward,  # noqa: F401  (registers commands)
    query,  # noqa: F401  (registers commands)
    retention,  # noqa: F401  (registers commands)
    verify,  # noqa: F401  (registers commands)
)
from audit_pipeline.cli.app import main

__all__ = ["main"]
