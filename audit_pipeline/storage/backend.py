"""What an export store's kind of storage must do, so :class:`~audit_pipeline.storage.object_store.ObjectStore` has no
branch per kind: a local folder (:mod:`.local_backend`) or S3 (:mod:`.s3_backend`).

Paths are the store's full paths (root and key); a backend raises what its library raises, and the store turns it
into one line naming the object and the setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from audit_pipeline.storage.digest import ObjectDigest


class Backend(Protocol):
    is_local: bool
    protocol: str
    root: str
    bucket: str | None
    sse_headers: dict[str, Any]
    fs: Any  # the fsspec filesystem that lists, reads and deletes

    def uri(self, path: str) -> str:
        """The object's address as users and other tools write it."""
        ...

    def not_found(self) -> str | None:
        """What a "not found" while reaching the store means here (a missing bucket), or None."""
        ...

    def check_writable(self) -> None: ...

    def staging_base(self) -> Path:
        """Where staging folders live."""
        ...

    def publish_file(self, local_path: Path, path: str, content_type: str, content_encoding: str | None, sha256: str | None) -> None:
        """Make ``local_path`` visible at ``path`` in one step."""
        ...

    def put_bytes(self, path: str, data: bytes, content_type: str) -> None:
        """Atomically write a small object."""
        ...

    def note_written(self, sha256_by_path: dict[str, str]) -> None:
        """Remember what this process just wrote, where a later check can trust it."""
        ...

    def known_digest(self, path: str) -> ObjectDigest | None:
        """The object's size and SHA-256 without reading it, when the store can vouch for them."""
        ...

    def hash_object(self, path: str) -> ObjectDigest:
        """Size and SHA-256 from one streaming read."""
        ...

    def forget(self, path: str) -> None:
        """The object at ``path`` is about to change or go: nothing noted about it holds any more."""
        ...

    def head(self, path: str) -> dict[str, Any]:
        """Object attributes (S3: content type and server-side encryption as stored)."""
        ...
