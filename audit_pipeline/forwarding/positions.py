"""Durable per-sink positions and leases, in the state database (``state_url``).

The position of a sink is the last ``(created_at, id)`` it has acknowledged; it lives in a
SQL database (SQLite file by default, PostgreSQL when several machines forward) so that
the Dagster runs and the ``audit-pipeline forward`` command continue from the same point.
A sensor cursor alone would not do: it moves when a run is *requested*, not when the sink
has acknowledged.

Only one forwarder may deliver to a sink at a time.  It holds a *lease*: a row naming the
holder and an expiry, taken with one conditional UPDATE (atomic on SQLite and PostgreSQL)
and renewed by the holder's heartbeat.  Every position change is *fenced* by the lease in the same
transaction: a forwarder that lost its lease (paused past the expiry, or its row was taken
over) cannot move the position, and stops.  Lease times come from the database clock on
PostgreSQL and from the local clock on SQLite (one machine).

Besides the position, each sink has a per-UTC-day count of the events it has delivered
(``audit_pipeline_delivered_by_day``), added in the *same* transaction that moves the
position.  Retention compares it with the day's rows before deleting them: a position only
says how far a sink got, not that every event behind it arrived (a row that commits
behind the position later than the sweep's window is never sent).  ``audit_pipeline_delivery_counting`` records where
counting began for each sink, so that days before it are told apart from undelivered ones.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError

from audit_pipeline.config.settings import Settings
from audit_pipeline.core.errors import AuditPipelineError, ConfigError, first_line
from audit_pipeline.core.isotime import epoch_micros, from_epoch_micros
from audit_pipeline.forwarding import ledger as late_ledger
from audit_pipeline.forwarding.delivered_counts import CountingStart, add_day_counts, counting_start, day_count, start_counting
from audit_pipeline.forwarding.ledger import LedgerEntry
from audit_pipeline.forwarding.state_tables import counting_table, leases_table, metadata, positions_table, sqlite_immediate_transactions
from audit_pipeline.sources.base import Position


class LeaseLost(AuditPipelineError):
    """Another forwarder took over this sink; this one must stop without moving the position."""


class PositionConflict(AuditPipelineError):
    """A position would move backwards: a bug or two writers; refused."""


@dataclass(frozen=True)
class SinkState:
    sink: str
    #: None: before the first event.
    position: Position | None
    delivered: int
    dead_lettered: int
    dead_letters_pending: int
    updated_at: float


@dataclass(frozen=True)
class LeaseInfo:
    holder: str
    expires_in: float


def new_holder() -> str:
    """Who holds a lease: readable in messages (host and pid), unique per forwarder."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class PositionStore:
    """Positions, counters and leases for every sink, in one small SQL database."""

    def __init__(self, url: str, *, setting: str = "state_url", clock: Callable[[], float] | None = None) -> None:
        """``clock``: seconds since the epoch for lease times instead of the database's (PostgreSQL) or the local
        (SQLite) clock; tests pass one they move by hand, so a lease expires when they say, not after a sleep."""
        self._clock = clock
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(f"{setting} is not a valid SQLAlchemy URL (e.g. sqlite:///state.db or postgresql://user@host/db)") from None
        self.setting = setting
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.description = parsed.render_as_string(hide_password=True)
        if self.is_sqlite:
            database = parsed.database
            if database and database != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
            self.engine: Engine = sa.create_engine(url, connect_args={"timeout": 60})
            sqlite_immediate_transactions(self.engine)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)
        self._create_schema()

    @classmethod
    def from_settings(cls, settings: Settings) -> PositionStore:
        return cls(settings.resolved_state_url())

    def _create_schema(self) -> None:
        for attempt in range(3):
            try:
                metadata.create_all(self.engine, checkfirst=True)
                late_ledger.metadata.create_all(self.engine, checkfirst=True)
                return
            except (IntegrityError, ProgrammingError):
                # Another process created the tables at the same moment.
                time.sleep(0.1 * (attempt + 1))
            except OperationalError as exc:
                raise AuditPipelineError(f"cannot open the state database {self.description} ({first_line(exc)}); check {self.setting}") from None
        metadata.create_all(self.engine, checkfirst=True)
        late_ledger.metadata.create_all(self.engine, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()

    # -- clock ------------------------------------------------------------------------------
    def _now(self, conn: sa.Connection) -> float:
        if self._clock is not None:
            return self._clock()
        if self.is_sqlite:
            return time.time()
        return float(conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())

    # -- reading ----------------------------------------------------------------------------
    def get(self, sink: str) -> SinkState | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(positions_table).where(positions_table.c.sink == sink)).first()
        return _state(row) if row is not None else None

    def all(self) -> list[SinkState]:
        """Every sink's state (retention asks this before deleting rows a sink still needs)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(positions_table).order_by(positions_table.c.sink)).fetchall()
        return [_state(r) for r in rows]

    def lease(self, sink: str) -> LeaseInfo | None:
        """The current, unexpired lease on a sink, if any."""
        with self.engine.begin() as conn:
            now = self._now(conn)
            row = conn.execute(sa.select(leases_table).where(leases_table.c.sink == sink)).first()
        if row is None or row.expires_at <= now:
            return None
        return LeaseInfo(row.holder, row.expires_at - now)

    # -- leases ------------------------------------------------------------------------------
    def acquire(self, sink: str, holder: str, lease_seconds: float) -> LeaseInfo | None:
        """Take the sink's lease; returns None when taken, else who holds it."""
        with self.engine.begin() as conn:
            now = self._now(conn)
            taken = conn.execute(
                leases_table.update()
                .where(leases_table.c.sink == sink)
                .where(sa.or_(leases_table.c.expires_at <= now, leases_table.c.holder == holder))
                .values(holder=holder, expires_at=now + lease_seconds)
            ).rowcount
            if taken == 1:
                return None
            row = conn.execute(sa.select(leases_table).where(leases_table.c.sink == sink)).first()
            if row is not None:
                return LeaseInfo(row.holder, row.expires_at - now)
        try:
            with self.engine.begin() as conn:
                now = self._now(conn)
                conn.execute(leases_table.insert().values(sink=sink, holder=holder, expires_at=now + lease_seconds))
            return None
        except IntegrityError:
            # Someone inserted first: ask again, which answers who holds it.
            return self.acquire(sink, holder, lease_seconds)

    def renew(self, sink: str, holder: str, lease_seconds: float) -> None:
        with self.engine.begin() as conn:
            self._renew(conn, sink, holder, lease_seconds)

    def _renew(self, conn: sa.Connection, sink: str, holder: str, lease_seconds: float) -> None:
        now = self._now(conn)
        renewed = conn.execute(
            leases_table.update()
            .where(leases_table.c.sink == sink, leases_table.c.holder == holder, leases_table.c.expires_at > now)
            .values(expires_at=now + lease_seconds)
        ).rowcount
        if renewed != 1:
            raise LeaseLost(
                f"the lease on sink {sink} expired or was taken by another forwarder; stopping without moving its position "
                "(raise forwarding.lease_seconds if passes pause longer than that)"
            )

    def release(self, sink: str, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(leases_table.delete().where(leases_table.c.sink == sink, leases_table.c.holder == holder))

    # -- positions ---------------------------------------------------------------------------
    def initialise(self, sink: str, position: Position | None) -> SinkState:
        """Record where a new sink starts; a sink that already has a position keeps it."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    positions_table.insert().values(
                        sink=sink,
                        created_at_us=epoch_micros(position.created_at) if position else None,
                        event_id=position.id if position else None,
                        delivered=0,
                        dead_lettered=0,
                        dead_letters_pending=0,
                        updated_at=time.time(),
                    )
                )
                conn.execute(
                    counting_table.insert().values(
                        sink=sink,
                        created_at_us=epoch_micros(position.created_at) if position else None,
                        event_id=position.id if position else None,
                        from_start=True,
                    )
                )
                # The late-commit ledger knows everything this sink is handed from where it starts.
                late_ledger.begin(conn, sink, epoch_micros(position.created_at) if position else None)
        except IntegrityError:
            pass
        state = self.get(sink)
        assert state is not None
        return state

    def advance(
        self,
        sink: str,
        holder: str,
        position: Position | None,
        *,
        delivered: int,
        dead_lettered: int,
        lease_seconds: float,
        per_day: Mapping[dt.date, int] | None = None,
        ledger: LedgerEntry | None = None,
        ledger_window: dt.timedelta | None = None,
    ) -> None:
        """Move the position forward after a batch was acknowledged, renewing the lease, in one transaction.

        ``per_day``: the batch's delivered (or skipped) events per UTC day, added to the sink's
        delivered counts in the same transaction, so a count never runs ahead of or behind the position.
        ``position`` None counts events delivered behind the position (late commits) without moving it.
        ``ledger`` records the batch's ids for the late-commit sweep, pruning entries older than
        ``ledger_window`` behind the position, in the same transaction.
        """
        with self.engine.begin() as conn:
            self._renew(conn, sink, holder, lease_seconds)
            row = conn.execute(sa.select(positions_table).where(positions_table.c.sink == sink)).first()
            if row is None:
                raise PositionConflict(f"sink {sink} has no position to advance; it must be initialised first")
            current = _state(row).position
            if position is not None and current is not None and (position.created_at, position.id) <= (current.created_at, current.id):
                raise PositionConflict(f"refusing to move sink {sink} back from {_show(current)} to {_show(position)}")
            if per_day is not None:
                start_counting(conn, sink, current)
                add_day_counts(conn, sink, per_day)
            values: dict[str, object] = {
                "delivered": positions_table.c.delivered + delivered,
                "dead_lettered": positions_table.c.dead_lettered + dead_lettered,
                "dead_letters_pending": positions_table.c.dead_letters_pending + dead_lettered,
                "updated_at": time.time(),
            }
            if position is not None:
                values.update(created_at_us=epoch_micros(position.created_at), event_id=position.id)
            else:
                late_ledger.count_late(conn, sink, delivered + dead_lettered)
            conn.execute(positions_table.update().where(positions_table.c.sink == sink).values(**values))
            if ledger is not None and ledger_window is not None:
                end = position or current
                edge = epoch_micros(end.created_at - ledger_window) if end is not None else 0
                before = (epoch_micros(current.created_at), current.id) if current is not None else None
                late_ledger.record(conn, sink, ledger, edge, before)
            elif ledger_window is None:
                late_ledger.stop_covering(conn, sink)

    def replayed(self, sink: str, count: int, per_day: Mapping[dt.date, int] | None = None) -> None:
        """Dead letters delivered by a replay no longer count as pending (and count as delivered on their days)."""
        with self.engine.begin() as conn:
            if per_day is not None:
                add_day_counts(conn, sink, per_day)
            conn.execute(
                positions_table.update()
                .where(positions_table.c.sink == sink)
                .values(
                    dead_letters_pending=sa.func.max(positions_table.c.dead_letters_pending - count, 0)
                    if self.is_sqlite
                    else sa.func.greatest(positions_table.c.dead_letters_pending - count, 0),
                    delivered=positions_table.c.delivered + count,
                    updated_at=time.time(),
                )
            )

    # -- delivered counts ----------------------------------------------------------------------
    def delivered_count(self, sink: str, day: dt.date) -> int:
        """Events of ``day`` (UTC) the sink has delivered, as committed with its position (0 when none)."""
        with self.engine.connect() as conn:
            return day_count(conn, sink, day)

    def counting_since(self, sink: str) -> CountingStart | None:
        """Where the sink's delivered counts begin; None when it has neither started nor delivered anything."""
        with self.engine.connect() as conn:
            return counting_start(conn, sink)


def _state(row: sa.Row) -> SinkState:  # type: ignore[type-arg]
    position = None
    if row.created_at_us is not None:
        position = Position(from_epoch_micros(int(row.created_at_us)), row.event_id or "")
    return SinkState(row.sink, position, int(row.delivered), int(row.dead_lettered), int(row.dead_letters_pending), float(row.updated_at))


def _show(position: Position) -> str:
    return f"({position.created_at.isoformat()}, {position.id})"
