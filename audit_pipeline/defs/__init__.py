"""Dagster declarations: thin wrappers that call the core modules."""
