"""Private local folders for files being written, owned by one live process, and the removal of abandoned ones.

Staging folders are named after the host and process that own them and hold a lock for as long as that process
lives, so the next export removes what a killed run left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

STAGING_DIR = ".staging"
#: Prefix of staging folders (beside a local export root, or in the temp directory for S3).
STAGING_PREFIX = "audit-export-"
_LOCK_FILE = ".owner.lock"


def host_tag() -> str:
    """This machine's name, safe for a folder name: staging of other machines is never touched."""
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"


@contextlib.contextmanager
def staging_folder(base: Path) -> Iterator[Path]:
    """A private folder under ``base``, removed afterwards whatever happens; abandoned ones are removed first.

    A crash (a ``kill -9``, a lost machine's restart) so costs disk space only until the next export.
    """
    remove_abandoned_staging(base)
    directory = Path(tempfile.mkdtemp(dir=base, prefix=f"{STAGING_PREFIX}{host_tag()}-{os.getpid()}-"))
    # Locked under another name, then renamed: a cleaner only ever sees a lock file that is held.
    lock = open(directory / f"{_LOCK_FILE}.new", "wb")  # noqa: SIM115 - held for the folder's lifetime
    fcntl.flock(lock, fcntl.LOCK_EX)
    os.replace(directory / f"{_LOCK_FILE}.new", directory / _LOCK_FILE)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        lock.close()


def remove_abandoned_staging(base: Path) -> list[Path]:
    """Delete staging folders of this host whose owning process is gone; returns what was removed.

    A live export holds an exclusive lock on its folder's lock file; the kernel drops it when
    the process dies, however it dies, so a lock we can take means the owner is gone
    (process ids are reused, locks are not).
    """
    removed: list[Path] = []
    prefix = f"{STAGING_PREFIX}{host_tag()}-"
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
