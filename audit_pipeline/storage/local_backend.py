"""A local folder as an export store: publishing is a rename on the same filesystem, and what this process wrote
is proved later by its inode's unchanged status instead of a read.

The process that wrote an object knows its SHA-256 and notes its inode's status right after publishing; while
that status is unchanged (a change through the filesystem always moves the inode's ctime, which no one can set
back) the object is the bytes that were hashed.  Otherwise the digest is one streaming read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from audit_pipeline.storage.digest import ObjectDigest, hash_stream
from audit_pipeline.storage.staging import STAGING_DIR

#: A local digest reads into one reused 1 MiB buffer: SHA-256 is the cost either way, and three objects
#: hashed at once then hold 3 MiB rather than three 8 MiB blocks (about 20 MB of the check's peak).
_READ_BLOCK = 1 << 20
#: How long after an object's last change its status is noted: longer than the tick of the kernel's file
#: timestamps (1-10 ms), so a change made after the note always gets a later ctime.
_TIMESTAMP_SETTLE_NS = 20_000_000


@dataclass(frozen=True)
class _Written:
    """A local object this process wrote: its inode's status just after, and the SHA-256 of what was written."""

    status: tuple[int, int, int, int, int]
    sha256: str


def _status(path: str) -> tuple[int, int, int, int, int]:
    info = os.stat(path)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


#: Absolute path → what this process wrote there (see :meth:`LocalBackend.note_written`).
_WRITTEN_HERE: dict[str, _Written] = {}


def _same_device(local_path: Path, target: str) -> bool:
    try:
        return os.stat(local_path).st_dev == os.stat(os.path.dirname(target)).st_dev
    except OSError:
        return False


class LocalBackend:
    """A folder on this machine (``/path``, ``~/path`` or ``file:///path``)."""

    is_local = True
    protocol = "file"
    bucket: str | None = None

    def __init__(self, path: str) -> None:
        self.root = str(Path(path).expanduser().resolve())
        self.sse_headers: dict[str, Any] = {}
        self.fs = fsspec.filesystem("file")

    def uri(self, path: str) -> str:
        return f"file://{path}"

    def not_found(self) -> str | None:
        return None

    def check_writable(self) -> None:
        os.makedirs(self.root, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise PermissionError(self.root)

    def staging_base(self) -> Path:
        """Beside the exports, so that publishing is a rename (or a hard link) and never a copy."""
        base = Path(self.root) / STAGING_DIR
        base.mkdir(parents=True, exist_ok=True)
        return base

    def publish_file(self, local_path: Path, path: str, content_type: str, content_encoding: str | None, sha256: str | None) -> None:
        self.forget(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.tmp-{uuid.uuid4().hex}"
        if _same_device(local_path, path):
            os.link(local_path, temporary)  # staged beside the target: no copy
        else:
            shutil.copyfile(local_path, temporary)
        os.replace(temporary, path)

    def put_bytes(self, path: str, data: bytes, content_type: str) -> None:
        """Written beside the target and renamed: no staging file, link or unlink (a day's log is thousands of tiles)."""
        self.forget(path)
        temporary = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(temporary, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except Exception:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def note_written(self, sha256_by_path: dict[str, str]) -> None:
        """Note each object's inode status (device, inode, size, mtime, ctime) with the SHA-256 written.

        Writing, truncating, replacing or re-timing a file moves its ctime to the current time, and only
        the kernel sets ctime.  Noting the status at least one timestamp tick after the objects' last
        change (a wait of at most 20 ms) makes any later change visible.  A filesystem with whole-second
        timestamps is too coarse for that: its objects are not noted, and are re-hashed."""
        try:
            newest = max((os.stat(path).st_ctime_ns for path in sha256_by_path), default=0)
        except OSError:
            return
        wait = newest + _TIMESTAMP_SETTLE_NS - time.time_ns()
        if wait > _TIMESTAMP_SETTLE_NS:  # a change stamped in the future: the clock was set back; note nothing
            return
        if wait > 0:
            time.sleep(wait / 1e9)
        for path, sha256 in sha256_by_path.items():
            try:
                status = _status(path)
            except OSError:
                continue
            if status[4] % 1_000_000_000:
                _WRITTEN_HERE[path] = _Written(status, sha256)

    def known_digest(self, path: str) -> ObjectDigest | None:
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

    def hash_object(self, path: str) -> ObjectDigest:
        with open(path, "rb", buffering=0) as handle:
            return hash_stream(handle, _READ_BLOCK)

    def forget(self, path: str) -> None:
        _WRITTEN_HERE.pop(path, None)

    def head(self, path: str) -> dict[str, Any]:
        return {"size": int(self.fs.info(path)["size"])}
