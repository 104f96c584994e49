"""One export of a given day at a time, across every machine of a deployment.

Dagster's run queue already starts one run per partition day (the ``dagster/partition`` tag
limit), but on the Celery profile a *step* can still run twice at once: a worker that lost its
broker connection (a network split, a stalled host) keeps exporting while the broker hands the
same step to another worker.  Two exports of one day would then race on its objects and its
manifest.  The export therefore holds a lock on its day from before it reads the previous
day's manifest until after it has linked the following days.

- With ``state_url`` on PostgreSQL (every multi-machine profile) the lock is a session-level
  advisory lock on the state database, keyed by the export root and the day.  The server
  releases it the moment the holder's connection ends: a worker killed with SIGKILL frees the
  day at once, and one whose host vanished frees it after the TCP keepalive probes set on
  the lock's connection (about half a minute), so a retry never waits for an expiry time.
- Otherwise (the SQLite state file: one machine) it is a byte-range lock (``fcntl``) on a file
  in the temporary directory, which the kernel releases when the holder dies.

Right before anything is published the holder confirms that it still holds the lock
(:meth:`DayLock.confirm`); an export whose lock connection was lost publishes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import socket
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from audit_pipeline.config.settings import Settings
from audit_pipeline.core.errors import ConfigError, StorageError, first_line

#: How long an export waits for another export of the same day before it fails (and is retried).
DEFAULT_WAIT_SECONDS = 900.0

# Server-side keepalives of the lock's connection: a holder whose host vanished loses the lock
# after about idle + interval * count seconds, without any server configuration.
_KEEPALIVES = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 -c tcp_user_timeout=25000"


class DayBusy(StorageError):
    """Another export of the same day held its lock for longer than the wait; retried like a storage outage."""


class DayLockLost(StorageError):
    """The lock's connection ended before publishing: another export may own the day now, so nothing is published."""


class DayLock(Protocol):
    def confirm(self) -> None:
        """Raise :class:`DayLockLost` unless the lock is still held (called right before publishing)."""


def lock_namespace(export_url: str) -> int:
    """A signed 32-bit number naming the export root, so that two roots sharing a state database never block each other."""
    return int.from_bytes(hashlib.blake2b(export_url.encode(), digest_size=4).digest(), "big", signed=True)


def _holder_name(day: dt.date, last: dt.date | None = None) -> str:
    days = f"{day}..{last}" if last is not None and last != day else f"{day}"
    return f"audit_pipeline export {days} {socket.gethostname()} pid {os.getpid()}"[:63]


class _AdvisoryLock:
    def __init__(self, conn: psycopg.Connection[Any], namespace: int, day: dt.date) -> None:
        self.conn = conn
        self.keys = (namespace, day.toordinal())
        self.day = day

    def try_take(self) -> bool:
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s, %s)", self.keys).fetchone()
        return bool(row and row[0])

    def holder(self) -> str:
        row = self.conn.execute(
            "SELECT a.application_name, a.client_addr::text FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.classid::bigint = (%s::bigint & 4294967295) AND l.objid::bigint = %s AND l.granted"
            # advisory locks belong to one database: another state database on the same server may hold the same keys
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            self.keys,
        ).fetchone()
        return f"{row[0]} ({row[1] or 'local'})" if row else "an export that has just finished"

    def confirm(self) -> None:
        try:
            row = self.conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                " AND classid::bigint = (%s::bigint & 4294967295) AND objid::bigint = %s AND granted",
                self.keys,
            ).fetchone()
        except psycopg.Error:
            row = None
        if not row or row[0] != 1:
            raise DayLockLost(f"the lock on {self.day} was lost (the state database connection ended); nothing was published, the export will be retried")


class _FileLock:
    def __init__(self, handle: Any, namespace: int, day: dt.date) -> None:
        self.handle = handle
        self.day = day

    def try_take(self) -> bool:
        try:
            fcntl.lockf(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.day.toordinal())
        except OSError:
            return False
        return True

    def holder(self) -> str:
        return f"another process on {socket.gethostname()}"

    def confirm(self) -> None:
        """A lock held by this process's open file cannot be lost while the process lives."""


def _wait_for(lock: _AdvisoryLock | _FileLock, day: dt.date, wait_seconds: float) -> None:
    attempts = Retrying(
        stop=stop_after_delay(wait_seconds),
        wait=wait_fixed(min(1.0, wait_seconds)),
        retry=retry_if_result(lambda taken: not taken),
        retry_error_callback=lambda _: False,
    )
    if not attempts(lock.try_take):
        raise DayBusy(f"{day} is being exported by {lock.holder()} for more than {wait_seconds:.0f} s; this export will be retried")


def _connect(state_url: str) -> psycopg.Connection[Any]:
    try:
        url = make_url(state_url).set(drivername="postgresql")
    except ArgumentError:
        raise ConfigError("state_url is not a valid SQLAlchemy URL (e.g. postgresql://user:pass@host:5432/audit_state)") from None
    try:
        return psycopg.connect(
            url.render_as_string(hide_password=False), autocommit=True, connect_timeout=30, options=_KEEPALIVES, application_name=_holder_name(dt.date.min)
        )
    except psycopg.Error as exc:
        where = f"{url.host}:{url.port or 5432}/{url.database}"
        reason = first_line(exc)
        raise StorageError(f"cannot reach the state database {where} to lock the export day: {reason} (check state_url / AUDIT_STATE_URL)") from None


@contextlib.contextmanager
def day_lock(settings: Settings, day: dt.date, *, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> Iterator[DayLock]:
    """Hold the export lock of ``day`` for the block; wait up to ``wait_seconds`` for another holder."""
    with days_lock(settings, [day], wait_seconds=wait_seconds) as lock:
        yield lock


class _AllOf:
    """Several days' locks held through one connection (or file): confirmed together."""

    def __init__(self, locks: list[_AdvisoryLock] | list[_FileLock]) -> None:
        self.locks = locks

    def confirm(self) -> None:
        for lock in self.locks:
            lock.confirm()


@contextlib.contextmanager
def days_lock(settings: Settings, days: Iterable[dt.date], *, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> Iterator[DayLock]:
    """Hold the export locks of every day in ``days`` for the block (``relink`` rewrites several days' manifests).

    Taken in ascending order through one connection, so that two multi-day holders never wait
    for each other in a circle, and an export (one day) never holds one lock while waiting for another.
    """
    wanted = sorted(set(days))
    if not wanted:
        yield _AllOf([])
        return
    namespace = lock_namespace(settings.export.url)
    state_url = settings.state_url or ""
    # The Celery profile (audit_pipeline/defs/executor.py) runs exports on several hosts: a file lock would not reach them.
    if os.environ.get("AUDIT_DAGSTER_EXECUTOR") == "celery" and not state_url.startswith("postgresql"):
        raise ConfigError(
            "AUDIT_DAGSTER_EXECUTOR=celery exports on several hosts, which share the per-day export lock through the state database: "
            "set state_url to PostgreSQL (state_url: ${AUDIT_STATE_URL} in the file AUDIT_CONFIG names, as deploy/audit_pipeline.yaml does)"
        )
    if state_url.startswith("postgresql"):
        with _connect(state_url) as conn:
            conn.execute("SELECT set_config('application_name', %s, false)", (_holder_name(wanted[0], wanted[-1]),))
            advisory = [_AdvisoryLock(conn, namespace, day) for day in wanted]
            for lock in advisory:
                _wait_for(lock, lock.day, wait_seconds)
            yield _AllOf(advisory)  # the server drops the locks with the connection, whatever happens in the block
        return
    path = os.path.join(tempfile.gettempdir(), f"audit_pipeline-daylocks-{namespace & 0xFFFFFFFF:08x}")
    with open(path, "a+b") as handle:
        local = [_FileLock(handle, namespace, day) for day in wanted]
        for byte_range in local:
            _wait_for(byte_range, byte_range.day, wait_seconds)
        yield _AllOf(local)  # closing the file releases the ranges
