"""Destinations for forwarded events, each behind the small interface in :mod:`audit_pipeline.sinks.base`."""
