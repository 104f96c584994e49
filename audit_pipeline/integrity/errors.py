"""The one error integrity raises: the chain cannot be extended or repaired as asked."""

from audit_pipeline.core.errors import AuditPipelineError


class IntegrityError(AuditPipelineError):
    """Publishing or linking would break or hide a break in the chain; the message says what to run."""
