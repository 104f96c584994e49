"""S3 (``s3://bucket/prefix``) as an export store: a single PUT or a completed multipart upload is the only moment
an object becomes visible, so a reader never sees half an object, and a failed upload leaves the previous version.

A file whose SHA-256 the writer already knows is sent in one streamed PUT carrying that checksum
(``ChecksumSHA256``): S3 refuses the upload if a byte differs, and keeps the full-object checksum, so a later
check proves an object intact with one HEAD instead of a download.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.storage.digest import ObjectDigest, hash_stream

#: S3's limit for one PUT; bigger files go up in parts (and lose the full-object checksum).
SINGLE_PUT_LIMIT = 5 * 2**30
_READ_BLOCK = 8 << 20


class S3Backend:
    """A bucket and prefix, through s3fs (``export.s3_endpoint_url`` for S3-compatible stores)."""

    is_local = False
    protocol = "s3"

    def __init__(self, bucket_and_prefix: str, *, endpoint_url: str | None, sse: str, kms_key_id: str | None) -> None:
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

    def uri(self, path: str) -> str:
        return f"s3://{path}"

    def not_found(self) -> str | None:
        return f"bucket {self.bucket!r} does not exist or is not reachable"

    def check_writable(self) -> None:
        self.fs.info(self.bucket)

    def staging_base(self) -> Path:
        return Path(tempfile.gettempdir())

    def publish_file(self, local_path: Path, path: str, content_type: str, content_encoding: str | None, sha256: str | None) -> None:
        """With ``sha256`` (the writer's digest of the file) the upload carries it: S3 rejects the PUT unless the bytes it received have that digest."""
        extra: dict[str, Any] = {"ContentType": content_type}
        if content_encoding:
            extra["ContentEncoding"] = content_encoding
        if sha256 is not None and os.path.getsize(local_path) <= SINGLE_PUT_LIMIT:
            bucket, _, rest = path.partition("/")
            with open(local_path, "rb") as body:  # streamed from disk: memory stays flat whatever the size
                self.fs.call_s3(
                    "put_object",
                    Bucket=bucket,
                    Key=rest,
                    Body=body,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode("ascii"),
                    **extra,
                )
        else:  # over 5 GiB: parts, one at a time (s3fs sends several 50 MB parts at once, each held in memory)
            self.fs.put_file(str(local_path), path, max_concurrency=1, **extra)

    def put_bytes(self, path: str, data: bytes, content_type: str) -> None:
        with tempfile.NamedTemporaryFile(delete=False) as handle:
            handle.write(data)
        try:
            self.publish_file(Path(handle.name), path, content_type, None, hashlib.sha256(data).hexdigest())
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(handle.name)

    def note_written(self, sha256_by_path: dict[str, str]) -> None:
        return  # S3 keeps each object's checksum itself

    def known_digest(self, path: str) -> ObjectDigest | None:
        """The full-object SHA-256 S3 verified on upload, from one HEAD; None for multipart uploads (a checksum of part checksums)."""
        bucket, _, rest = path.partition("/")
        head = self.fs.call_s3("head_object", Bucket=bucket, Key=rest, ChecksumMode="ENABLED")
        stored = head.get("ChecksumSHA256")
        if stored and "-" not in stored and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            with contextlib.suppress(binascii.Error, ValueError):
                return ObjectDigest(int(head["ContentLength"]), base64.b64decode(stored, validate=True).hex(), "s3-checksum")
        return None

    def hash_object(self, path: str) -> ObjectDigest:
        with self.fs.open(path, "rb", block_size=_READ_BLOCK, cache_type="none") as handle:
            return hash_stream(handle, _READ_BLOCK)

    def forget(self, path: str) -> None:
        return

    def head(self, path: str) -> dict[str, Any]:
        bucket, _, rest = path.partition("/")
        info: dict[str, Any] = self.fs.call_s3("head_object", Bucket=bucket, Key=rest)
        return info
