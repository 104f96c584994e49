"""An ad-hoc export written into the export store under ``adhoc/``, for the UI's "apply filters → Export" flow.

The bytes are those of ``audit-pipeline export`` for the same request (the same :func:`write_range`), staged
locally and published in one step (rename, or a single checksummed S3 upload), so a failed or interrupted run
leaves nothing under the key and a re-run replaces it whole.  ``adhoc/`` sits beside the per-format prefixes the
daily checks, ``verify`` and retention read, and none of them lists it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.exports.adhoc import write_range
from audit_pipeline.exports.adhoc_request import RangeRequest
from audit_pipeline.formats.writers import CONTENT_TYPES
from audit_pipeline.sources.base import AuditSource
from audit_pipeline.storage.object_store import ObjectStore

ADHOC_PREFIX = "adhoc"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class StoredExport:
    """Where the export landed and what it holds (the run's metadata)."""

    key: str
    uri: str
    rows: int
    bytes: int
    sha256: str


def adhoc_key(name: str, fmt: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"ad-hoc export name {name!r}: use letters, digits, '.', '_' or '-' (at most 128), starting with a letter or digit")
    return f"{ADHOC_PREFIX}/{name}.{fmt}"


def export_range_to_store(source: AuditSource, store: ObjectStore, request: RangeRequest, name: str, export: ExportSettings) -> StoredExport:
    """Write ``request``'s events to ``adhoc/<name>.<format>`` in ``store``; nothing is visible there until all are written."""
    key = adhoc_key(name, request.fmt)
    with store.staging() as staging:
        local = staging / f"adhoc.{request.fmt}"
        with open(local, "wb") as out:
            result = write_range(
                source,
                request.time_range,
                request.fmt,
                out,
                event_filter=request.event_filter,
                csv_formula_protection=export.csv_formula_protection,
                parquet_row_group_rows=export.parquet_row_group_rows,
            )
        digest = hashlib.sha256()
        size = 0
        with open(local, "rb") as written:  # the staged file, in 1 MiB reads: memory stays flat
            while chunk := written.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        sha256 = digest.hexdigest()
        store.publish_file(local, key, CONTENT_TYPES[request.fmt], sha256=sha256)
    return StoredExport(key=key, uri=store.uri(key), rows=result.rows, bytes=size, sha256=sha256)
