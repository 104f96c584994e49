"""The export store: a local folder, ``file://`` or ``s3://bucket/prefix``, addressed by keys relative to its root.

Publishing is atomic on both: a staged file is renamed into place on a local folder (:mod:`.local_backend`), and
an object appears on S3 only when its single PUT or multipart upload completes (:mod:`.s3_backend`).  A check
proves an object intact without reading it when the store can vouch for it (S3's stored SHA-256, or a local
inode unchanged since this process wrote it), else with one streaming read (:meth:`ObjectStore.digest`).
Every failure becomes one line naming the object and the setting to fix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.core.errors import ConfigError, StorageError, first_line
from audit_pipeline.storage.backend import Backend
from audit_pipeline.storage.digest import ObjectDigest
from audit_pipeline.storage.local_backend import LocalBackend
from audit_pipeline.storage.s3_backend import S3Backend
from audit_pipeline.storage.staging import STAGING_DIR, staging_folder


class ObjectStore:
    """Keys are ``/``-separated paths relative to the export root."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        sse: str = "AES256",
        kms_key_id: str | None = None,
        setting: str = "AUDIT_EXPORT_URL",
    ) -> None:
        self.setting = setting
        self.url = url
        backend: Backend
        if url.startswith("s3://"):
            bucket_and_prefix = url[len("s3://") :].strip("/")
            if not bucket_and_prefix:
                raise ConfigError(f"{setting}={url!r} names no bucket; use s3://bucket/prefix")
            backend = S3Backend(bucket_and_prefix, endpoint_url=endpoint_url, sse=sse, kms_key_id=kms_key_id)
        elif "://" in url and not url.startswith("file://"):
            raise ConfigError(f"{setting}={url!r}: only a local path, file://... or s3://bucket/prefix is supported")
        else:
            backend = LocalBackend(url[len("file://") :] if url.startswith("file://") else url)
        self._backend = backend
        self.is_local = backend.is_local
        self.protocol = backend.protocol
        self.root = backend.root
        self.bucket = backend.bucket
        self.sse_headers = backend.sse_headers
        self.fs = backend.fs

    @classmethod
    def from_settings(cls, export: ExportSettings) -> ObjectStore:
        return cls(export.url, endpoint_url=export.s3_endpoint_url, sse=export.s3_sse, kms_key_id=export.s3_kms_key_id)

    # -- naming ------------------------------------------------------------------------------
    def path(self, key: str) -> str:
        return f"{self.root}/{key.lstrip('/')}" if key else self.root

    def uri(self, key: str) -> str:
        return self._backend.uri(self.path(key))

    # -- checks and errors -------------------------------------------------------------------
    def _explain(self, exc: BaseException, action: str, key: str) -> StorageError:
        where = self.uri(key)
        if isinstance(exc, PermissionError):
            return StorageError(f"access denied while {action} {where}: check the AWS credentials and the bucket policy ({self.setting})")
        if isinstance(exc, FileNotFoundError) and (missing := self._backend.not_found()):
            return StorageError(f"{missing} while {action} {where}; check {self.setting}")
        return StorageError(f"object store error while {action} {where}: {first_line(exc)} ({self.setting})")

    def check_writable(self) -> None:
        """Fail before any work if the export location cannot take objects."""
        try:
            self._backend.check_writable()
        except Exception as exc:
            raise self._explain(exc, "checking", "") from None

    # -- staging and publishing --------------------------------------------------------------
    def staging_base(self) -> Path:
        """Where staging folders live: beside the exports on a local folder (so publishing is a rename), else the temp directory."""
        return self._backend.staging_base()

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A private local folder for files being written; removed afterwards, whatever happens (leftovers of
        runs that are no longer alive are removed first)."""
        with staging_folder(self.staging_base()) as directory:
            yield directory

    def publish_file(self, local_path: Path, key: str, content_type: str, content_encoding: str | None = None, sha256: str | None = None) -> None:
        """Make ``local_path`` visible at ``key`` in one step (rename or a single S3 upload).

        With ``sha256`` (the writer's digest of the file), an S3 upload carries it as the
        object's checksum: S3 rejects the PUT unless the bytes it received have that digest.
        """
        try:
            self._backend.publish_file(local_path, self.path(key), content_type, content_encoding, sha256)
        except Exception as exc:
            raise self._explain(exc, "publishing", key) from None

    def note_written(self, sha256_by_key: dict[str, str]) -> None:
        """Remember the SHA-256 of objects this process has just published and will not touch again, so that a
        check in this process proves each one without reading it back (:meth:`digest`); see :mod:`.local_backend`."""
        self._backend.note_written({self.path(key): sha256 for key, sha256 in sha256_by_key.items()})

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        """Atomically write a small object (manifests, dead letters, transparency-log tiles)."""
        try:
            self._backend.put_bytes(self.path(key), data, content_type)
        except Exception as exc:
            raise self._explain(exc, "publishing", key) from None

    # -- reading -----------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        try:
            return bool(self.fs.exists(self.path(key)))
        except Exception as exc:
            raise self._explain(exc, "looking up", key) from None

    def size(self, key: str) -> int:
        return int(self.fs.info(self.path(key))["size"])

    def open(self, key: str) -> BinaryIO:
        try:
            return self.fs.open(self.path(key), "rb")  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._explain(exc, "reading", key) from None

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start``..``end`` (exclusive) of an object: one ranged GET on S3."""
        try:
            return bytes(self.fs.cat_file(self.path(key), start=start, end=end))
        except Exception as exc:
            raise self._explain(exc, "reading", key) from None

    def digest(self, key: str) -> ObjectDigest:
        """Size and SHA-256 of a stored object, asking the store before reading it.

        S3 answers one HEAD with the full-object SHA-256 it verified on upload; a local object
        this process wrote is proved by its unchanged inode status (:meth:`note_written`); anything
        else (multipart uploads keep a checksum of part checksums, other stores keep none, a local
        object written elsewhere or changed since) is hashed in one streaming read.
        """
        path = self.path(key)
        try:
            known = self._backend.known_digest(path)
        except Exception as exc:
            raise self._explain(exc, "looking up", key) from None
        if known is not None:
            return known
        try:
            return self._backend.hash_object(path)
        except Exception as exc:
            raise self._explain(exc, "reading", key) from None

    def read_bytes(self, key: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self.path(key)))
        except Exception as exc:
            raise self._explain(exc, "reading", key) from None

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (recursive), relative to the root, sorted; staging excluded."""
        base = self.path(prefix)
        try:
            if not self.fs.exists(base):
                return []
            found = self.fs.find(base)
        except Exception as exc:
            raise self._explain(exc, "listing", prefix) from None
        root = self.root.rstrip("/") + "/"
        keys = [p[len(root) :] if p.startswith(root) else p for p in found]
        return sorted(k for k in keys if not k.startswith(STAGING_DIR + "/") and ".tmp-" not in k)

    def delete(self, key: str) -> None:
        self._backend.forget(self.path(key))
        try:
            self.fs.rm_file(self.path(key))
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._explain(exc, "deleting", key) from None

    def head(self, key: str) -> dict[str, Any]:
        """Object attributes (S3: content type and server-side encryption as stored)."""
        return self._backend.head(self.path(key))
