"""Export, forward, retain and verify HelloJohn audit logs."""

__version__ = "0.1.0"
