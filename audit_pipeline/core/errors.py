"""Errors a user can act on: each names what is wrong and the setting to change."""

from typing import Any

from audit_pipeline.core.redaction import redact


class AuditPipelineError(Exception):
    """Base for failures with a message written for the operator, never a bare traceback.

    The message is redacted when the error is made, so no caller can show a secret by
    printing, logging or truncating it.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class ConfigError(AuditPipelineError):
    """A setting is missing, malformed or contradictory; the message names the key."""


class SourceError(AuditPipelineError):
    """The audit database cannot be read as configured."""


class StorageError(AuditPipelineError):
    """The object store cannot be written or read as configured."""


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message, for a one-line error that names its cause.

    Driver and library messages often run to several lines (a SQL context, a hint, a traceback
    excerpt); the first says what happened.  An empty message gives ``default``, else the class name.
    """
    text = str(exc).strip()
    if not text:
        return default if default is not None else type(exc).__name__
    return text.splitlines()[0].strip()
