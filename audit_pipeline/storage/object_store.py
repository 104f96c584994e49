"""Object storage through fsspec: a local folder, ``file://`` or ``s3://bucket/prefix``.

Publishing is atomic: on a local folder a staged file is renamed into place
(``os.replace`` on the same filesystem); on S3 a single PUT or a completed multipart
upload is the only moment an object becomes visible, so a reader never sees half an
object, and a failed upload leaves the previous version.

On S3 a file whose SHA-256 the writer already knows is sent in one streamed PUT carrying
that checksum (``ChecksumSHA256``): S3 refuses the upload if a byte differs, and keeps the
full-object checksum, so a later check proves an object intact with one HEAD instead of a
download (:meth:`ObjectStore.digest`).  On a local folder the process that wrote an object
knows its SHA-256 and notes its inode's status right after publishing; while that status is
unchanged (a change through the filesystem always moves the inode's ctime, which no one can
set back) the object is the bytes that were hashed.  Otherwise the digest is one streaming read.

Staging folders are named after the host and process that own them and hold a lock for
as long as that process lives, so the next export removes what a killed run left behind.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import fsspec

from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.core.errors import ConfigError, StorageError, first_line

STAGING_DIR = ".staging"
#: Prefix of staging folders outside the export root (S3 exports stage in the temp directory).
STAGING_PREFIX = "audit-export-"
_LOCK_FILE = ".owner.lock"
#: S3's limit for one PUT; bigger files go up in parts (and lose the full-object checksum).
SINGLE_PUT_LIMIT = 5 * 2**30
_READ_BLOCK = 8 << 20
#: A local digest reads into one reused 1 MiB buffer: SHA-256 is the cost either way, and three objects
#: hashed at once then hold 3 MiB rather than three fresh 8 MiB blocks (about 20 MB of the check's peak).
_LOCAL_READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class ObjectDigest:
    """Size and SHA-256 of a stored object, and how they were learned (``s3-checksum``,
    ``unchanged-since-written`` or ``read``)."""

    size: int
    sha256: str
    source: str
    bytes_read: int = 0
    #: When the object was read: its first and last bytes (up to ``EDGE_BYTES`` each), where a
    #: file states its schema (CSV header, first NDJSON line, Parquet footer), so no second read is needed.
    head: bytes = b""
    tail: bytes = b""


#: How much of each end of an object a digest read keeps.
EDGE_BYTES = 64 << 10


@dataclass(frozen=True)
class _Written:
    """A local object this process wrote: its inode's status just after, and the SHA-256 of what was written."""

    status: tuple[int, int, int, int, int]
    sha256: str


def _status(path: str) -> tuple[int, int, int, int, int]:
    info = os.stat(path)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


#: Absolute path → what this process wrote there (see :meth:`ObjectStore.note_written`).
_WRITTEN_HERE: dict[str, _Written] = {}
#: How long after an object's last change its status is noted: longer than the tick of the kernel's file
#: timestamps (1-10 ms), so a change made after the note always gets a later ctime.
_TIMESTAMP_SETTLE_NS = 20_000_000


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
        text = first_line(exc)
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
    def staging_base(self) -> Path:
        """Where staging folders live: beside the exports on a local folder (so publishing is a rename), else the temp directory."""
        if self.is_local:
            base = Path(self.root) / STAGING_DIR
            base.mkdir(parents=True, exist_ok=True)
            return base
        return Path(tempfile.gettempdir())

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A private local folder for files being written; removed afterwards, whatever happens.

        Leftovers of runs that are no longer alive (a ``kill -9``, a lost machine's restart) are
        removed first, so a crash costs disk space only until the next export.
        """
        base = self.staging_base()
        remove_abandoned_staging(base)
        directory = Path(tempfile.mkdtemp(dir=base, prefix=f"{STAGING_PREFIX}{_host_tag()}-{os.getpid()}-"))
        # Locked under another name, then renamed: a cleaner only ever sees a lock file that is held.
        lock = open(directory / f"{_LOCK_FILE}.new", "wb")  # noqa: SIM115 - held for the folder's lifetime
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.replace(directory / f"{_LOCK_FILE}.new", directory / _LOCK_FILE)
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            lock.close()

    def publish_file(self, local_path: Path, key: str, content_type: str, content_encoding: str | None = None, sha256: str | None = None) -> None:
        """Make ``local_path`` visible at ``key`` in one step (rename or a single S3 upload).

        With ``sha256`` (the writer's digest of the file), an S3 upload carries it as the
        object's checksum: S3 rejects the PUT unless the bytes it received have that digest.
        """
        target = self.path(key)
        _WRITTEN_HERE.pop(target, None)
        try:
            if self.is_local:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                temporary = f"{target}.tmp-{uuid.uuid4().hex}"
                if _same_device(local_path, target):
                    os.link(local_path, temporary)  # staged beside the target: no copy
                else:
                    shutil.copyfile(local_path, temporary)
                os.replace(temporary, target)
                return
            extra: dict[str, Any] = {"ContentType": content_type}
            if content_encoding:
                extra["ContentEncoding"] = content_encoding
            if sha256 is not None and os.path.getsize(local_path) <= SINGLE_PUT_LIMIT:
                bucket, _, rest = target.partition("/")
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
                self.fs.put_file(str(local_path), target, max_concurrency=1, **extra)
        except Exception as exc:
            raise self._explain(exc, "publishing", key) from None

    def note_written(self, sha256_by_key: dict[str, str]) -> None:
        """Remember the SHA-256 of local objects this process has just published and will not touch again,
        with their inodes' status (device, inode, size, mtime, ctime), so that a check in this process
        proves each one by its status instead of reading it back (:meth:`digest`).

        Writing, truncating, replacing or re-timing a file moves its ctime to the current time, and only
        the kernel sets ctime.  Noting the status at least one timestamp tick after the objects' last
        change (a wait of at most 20 ms) makes any later change visible.  A filesystem with whole-second
        timestamps is too coarse for that: its objects are not noted, and are re-hashed."""
        if not self.is_local:
            return
        paths = {self.path(key): sha256 for key, sha256 in sha256_by_key.items()}
        try:
            newest = max((os.stat(path).st_ctime_ns for path in paths), default=0)
        except OSError:
            return
        wait = newest + _TIMESTAMP_SETTLE_NS - time.time_ns()
        if wait > _TIMESTAMP_SETTLE_NS:  # a change stamped in the future: the clock was set back; note nothing
            return
        if wait > 0:
            time.sleep(wait / 1e9)
        for path, sha256 in paths.items():
            try:
                status = _status(path)
            except OSError:
                continue
            if status[4] % 1_000_000_000:
                _WRITTEN_HERE[path] = _Written(status, sha256)

    def _noted_digest(self, path: str) -> ObjectDigest | None:
        noted = _WRITTEN_HERE.get(path)
        if noted is None:
            return None
        try:
            status = _status(path)
        except OSError:
            status = None
        if status != noted.status:
            _WRITTEN_HERE.pop(path, None)  # changed since: from now on re-hashed
            return None
        return ObjectDigest(status[2], noted.sha256, "unchanged-since-written")

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        """Atomically write a small object (manifests, dead letters, transparency-log tiles)."""
        if self.is_local:  # written beside the target and renamed: no staging file, link or unlink (a day's log is thousands of tiles)
            target = self.path(key)
            _WRITTEN_HERE.pop(target, None)
            temporary = f"{target}.tmp-{uuid.uuid4().hex}"
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(temporary, "wb") as out:
                    out.write(data)
                os.replace(temporary, target)
            except Exception as exc:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise self._explain(exc, "publishing", key) from None
            return
        with tempfile.NamedTemporaryFile(delete=False) as handle:
            handle.write(data)
        try:
            self.publish_file(Path(handle.name), key, content_type, sha256=hashlib.sha256(data).hexdigest())
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
        if self.is_local and (noted := self._noted_digest(self.path(key))) is not None:
            return noted
        if not self.is_local:
            bucket, _, rest = self.path(key).partition("/")
            try:
                head = self.fs.call_s3("head_object", Bucket=bucket, Key=rest, ChecksumMode="ENABLED")
            except Exception as exc:
                raise self._explain(exc, "looking up", key) from None
            stored = head.get("ChecksumSHA256")
            if stored and "-" not in stored and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
                with contextlib.suppress(binascii.Error, ValueError):
                    return ObjectDigest(int(head["ContentLength"]), base64.b64decode(stored, validate=True).hex(), "s3-checksum")
        try:
            opened = open(self.path(key), "rb", buffering=0) if self.is_local else self.fs.open(self.path(key), "rb", block_size=_READ_BLOCK, cache_type="none")  # noqa: SIM115
            buffer = bytearray(_LOCAL_READ_BLOCK if self.is_local else _READ_BLOCK)
            view = memoryview(buffer)
            digest, size, head, tail = hashlib.sha256(), 0, b"", b""
            with opened as handle:
                while count := handle.readinto(buffer):
                    block = view[:count]
                    digest.update(block)
                    size += count
                    if len(head) < EDGE_BYTES:
                        head += block[: EDGE_BYTES - len(head)]
                    tail = (tail + block[-EDGE_BYTES:])[-EDGE_BYTES:]
        except Exception as exc:
            raise self._explain(exc, "reading", key) from None
        return ObjectDigest(size, digest.hexdigest(), "read", size, head, tail)

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
        _WRITTEN_HERE.pop(self.path(key), None)
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


def _host_tag() -> str:
    """This machine's name, safe for a folder name: staging of other machines is never touched."""
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"


def remove_abandoned_staging(base: Path) -> list[Path]:
    """Delete staging folders of this host whose owning process is gone; returns what was removed.

    A live export holds an exclusive lock on its folder's lock file; the kernel drops it when
    the process dies, however it dies, so a lock we can take means the owner is gone
    (process ids are reused, locks are not).
    """
    removed: list[Path] = []
    prefix = f"{STAGING_PREFIX}{_host_tag()}-"
    with contextlib.suppress(FileNotFoundError):
        for directory in base.iterdir():
            if not directory.name.startswith(prefix) or not directory.is_dir():
                continue
            try:
                lock = open(directory / _LOCK_FILE, "rb")  # noqa: SIM115 - closed below
            except OSError:
                continue  # no lock file yet: being created right now, or not ours
            with lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # its export is still running
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(directory)
    return removed


def _same_device(local_path: Path, target: str) -> bool:
    try:
        return os.stat(local_path).st_dev == os.stat(os.path.dirname(target)).st_dev
    except OSError:
        return False
