"""The one check every section with an HTTP endpoint makes: the URL names its scheme, http or https.

A URL without one (``splunk:8088``, ``hooks.slack.com/…``) would otherwise fail later, at the first request, far
from the setting that holds it.
"""

from __future__ import annotations


def require_http_url(value: str, example: str) -> str:
    """Return ``value`` if it starts with ``https://`` or ``http://``; else raise the one-line error, ``example``
    completing "must be an http(s):// URL…" (e.g. ``", e.g. https://siem.example.com/api/ingest"``)."""
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"must be an http(s):// URL{example}")
    return value
