"""Object storage through fsspec: a local folder, ``file://`` or ``s3://bucket/prefix``.

Publishing is atomic: on a local folder a staged file is renamed into place
(``os.replace`` on the same filesystem); on S3 a single PUT or a completed multipart
upload is the only moment an object becomes visible, so a reader never sees half an
object, and a failed upload leaves the previous version.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import fsspec

from audit_pipeline.errors import ConfigError, StorageError
from audit_pipeline.settings import ExportSettings

STAGING_DIR = ".staging"


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
        if url.startswith("s3://"):
            bucket_and_prefix = url[len("s3://") :].strip("/")
            if not bucket_and_prefix:
                raise ConfigError(f"{setting}={url!r} names no bucket; use s3://bucket/prefix")
            self.is_local = False
            self.protocol = "s3"
            self.root = bucket_and_prefix
            self.bucket: str | None = bucket_and_prefix.split("/", 1)[0]
            extra: dict[str, Any] = {}
            if sse == "AES256":
                extra = {"ServerSideEncryption": "AES256"}
            elif sse == "aws:kms":
                if not kms_key_id:
                    raise ConfigError("AUDIT_S3_SSE=aws:kms needs a key: set AUDIT_S3_KMS_KEY_ID (export.s3_kms_key_id)")
                extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}
            self.sse_headers = extra
            import s3fs

            self.fs = s3fs.S3FileSystem(
                client_kwargs={"endpoint_url": endpoint_url} if endpoint_url else {},
                s3_additional_kwargs=extra,
                use_listings_cache=False,
                skip_instance_cache=True,
            )
        elif "://" in url and not url.startswith("file://"):
            raise ConfigError(f"{setting}={url!r}: only a local path, file://... or s3://bucket/prefix is supported")
        else:
            path = url[len("file://") :] if url.startswith("file://") else url
            self.is_local = True
            self.protocol = "file"
            self.root = str(Path(path).expanduser().resolve())
            self.bucket = None
            self.sse_headers = {}
            self.fs = fsspec.filesystem("file")
        self.url = url

    @classmethod
    def from_settings(cls, export: ExportSettings) -> ObjectStore:
        return cls(export.url, endpoint_url=export.s3_endpoint_url, sse=export.s3_sse, kms_key_id=export.s3_kms_key_id)

    # -- naming ------------------------------------------------------------------------------
    def path(self, key: str) -> str:
        return f"{self.root}/{key.lstrip('/')}" if key else self.root

    def uri(self, key: str) -> str:
        return f"s3://{self.path(key)}" if not self.is_local else f"file://{self.path(key)}"

    # -- checks and errors -------------------------------------------------------------------
    def _explain(self, exc: BaseException, action: str, key: str) -> StorageError:
        where = self.uri(key)
        if isinstance(exc, PermissionError):
            return StorageError(f"access denied while {action} {where}: check the AWS credentials and the bucket policy ({self.setting})")
        if isinstance(exc, FileNotFoundError) and not self.is_local:
            return StorageError(f"bucket {self.bucket!r} does not exist or is not reachable while {action} {where}; check {self.setting}")
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StorageError(f"object store error while {action} {where}: {text} ({self.setting})")

    def check_writable(self) -> None:
        """Fail before any work if the export location cannot take objects."""
        try:
            if self.is_local:
                os.makedirs(self.root, exist_ok=True)
                if not os.access(self.root, os.W_OK):
                    raise PermissionError(self.root)
            else:
                self.fs.info(self.bucket)
        except Exception as exc:
            raise self._explain(exc, "checking", "") from None

    # -- staging and publishing --------------------------------------------------------------
    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A private local folder for files being written; removed afterwards, whatever happens."""
        if self.is_local:
            base = Path(self.root) / STAGING_DIR
            base.mkdir(parents=True, exist_ok=True)
            directory = Path(tempfile.mkdtemp(dir=base))
        else:
            directory = Path(tempfile.mkdtemp(prefix="audit-export-"))
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def publish_file(self, local_path: Path, key: str, content_type: str, content_encoding: str | None = None) -> None:
        """Make ``local_path`` visible at ``key`` in one step (rename or a single S3 upload)."""
        target = self.path(key)
        try:
            if self.is_local:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                temporary = f"{target}.tmp-{uuid.uuid4().hex}"
                if _same_device(local_path, target):
                    os.link(local_path, temporary)  # staged beside the target: no copy
                else:
                    shutil.copyfile(local_path, temporary)
                os.replace(temporary, target)
            else:
                extra: dict[str, Any] = {"ContentType": content_type}
                if content_encoding:
                    extra["ContentEncoding"] = content_encoding
                self.fs.put_file(str(local_path), target, **extra)
        except Exception as exc:
            raise self._explain(exc, "publishing", key) from None

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        """Atomically write a small object (manifests, dead letters)."""
        with tempfile.NamedTemporaryFile(delete=False) as handle:
            handle.write(data)
        try:
            self.publish_file(Path(handle.name), key, content_type)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(handle.name)

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
        try:
            self.fs.rm_file(self.path(key))
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._explain(exc, "deleting", key) from None

    def head(self, key: str) -> dict[str, Any]:
        """Object attributes (S3: content type and server-side encryption as stored)."""
        if self.is_local:
            return {"size": self.size(key)}
        bucket, _, rest = self.path(key).partition("/")
        info: dict[str, Any] = self.fs.call_s3("head_object", Bucket=bucket, Key=rest)
        return info


def _same_device(local_path: Path, target: str) -> bool:
    try:
        return os.stat(local_path).st_dev == os.stat(os.path.dirname(target)).st_dev
    except OSError:
        return False
