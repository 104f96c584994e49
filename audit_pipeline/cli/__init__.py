"""The ``audit-pipeline`` command: the same core as the Dagster definitions, without a daemon.

Each sub-command lives in its own module and registers itself on :data:`main` when it is
imported; the group imports only the module of the command being run (``COMMAND_MODULES``).
"""

from audit_pipeline.cli.app import COMMAND_MODULES, main

__all__ = ["COMMAND_MODULES", "main"]
