"""Errors a user can act on: each names what is wrong and the setting to change."""


class AuditPipelineError(Exception):
    """Base for failures with a message written for the operator, never a bare traceback."""


class ConfigError(AuditPipelineError):
    """A setting is missing, malformed or contradictory; the message names the key."""


class SourceError(AuditPipelineError):
    """The audit database cannot be read as configured."""


class StorageError(AuditPipelineError):
    """The object store cannot be written or read as configured."""
