"""Forwarding audit events to sinks: durable positions, a safe horizon, retries, dead letters.

See :mod:`audit_pipeline.forwarding.engine` for how each guarantee is kept.
"""
