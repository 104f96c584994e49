"""Moving a sink's position by hand (``audit-pipeline sinks seek``), with a record of who moved it and why.

A sink's ``start`` setting only applies before it has a position; afterwards the only way to
re-send a range (a SIEM that lost an index) or to skip one (a sink added long after the data) is
to move the position itself.  The engine never moves a position backwards
(:meth:`PositionStore.advance` refuses), so this module does it, deliberately and visibly:

* it takes the sink's lease first, so it refuses while a forwarder (the command or a Dagster run)
  delivers to the sink, and no forwarder can start half-way through the move;
* in one transaction it sets the position, restarts the per-day delivered counts at the new
  position (days from the new position's day on are counted again as events are re-delivered; a
  skipped range is no longer owed to this sink, so retention no longer waits for it), and appends a
  row to ``audit_pipeline_position_moves``: when, who (user and host), why, from where, to where;
* the late-commit ledger is dropped: it covers again from the position of the next batch.

Targets: ``earliest`` (before the first event), ``now`` (the source's clock: only events from now
on), a UTC day (its midnight: that day's events and later ones), or an event id (the sink continues
after that event, which counts as delivered).
"""

from __future__ import annotations

import datetime as dt
import getpass
import socket
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.core.isotime import epoch_micros, from_epoch_micros
from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.forwarding import ledger
from audit_pipeline.forwarding.errors import SinkBusy
from audit_pipeline.forwarding.horizon import initial_position, source_now
from audit_pipeline.forwarding.positions import PositionStore, new_holder
from audit_pipeline.forwarding.state_tables import counting_table, delivered_by_day_table, positions_table
from audit_pipeline.sources.base import EARLIEST, AuditSource, Position, TimeRange

moves_metadata = sa.MetaData()
moves_table = sa.Table(
    "audit_pipeline_position_moves",
    moves_metadata,
    sa.Column("move", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sink", sa.String(200), nullable=False, index=True),
    sa.Column("moved_at", sa.Float, nullable=False),
    # user@host of whoever ran the command
    sa.Column("moved_by", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    # the target as given (earliest, now, a day, an event id)
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("from_created_at_us", sa.BigInteger, nullable=True),
    sa.Column("from_event_id", sa.Text, nullable=True),
    sa.Column("to_created_at_us", sa.BigInteger, nullable=True),
    sa.Column("to_event_id", sa.Text, nullable=True),
)


@dataclass(frozen=True)
class PositionMove:
    """One recorded move of a sink's position."""

    sink: str
    moved_at: dt.datetime
    moved_by: str
    reason: str
    target: str
    before: Position | None
    after: Position | None


def operator() -> str:
    """Who is moving the position, as recorded: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def resolve_target(target: str, source: AuditSource) -> Position | None:
    """The position a ``--to`` value means; an unknown event id is a :class:`ConfigError` naming it."""
    text = target.strip()
    if text in ("earliest", "now"):
        return initial_position(text, source)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None and len(text) == 10:
        return initial_position(day, source)
    found = find_event(source, text)
    if found is None:
        raise ConfigError(f"--to {text!r} is neither earliest, now, a day (YYYY-MM-DD) nor the id of an event in the source")
    return found


def find_event(source: AuditSource, event_id: str) -> Position | None:
    """The ``(created_at, id)`` of the event with this id, read in batches (bounded memory), or None."""
    end = source_now(source) + dt.timedelta(days=1)
    ids_at, created_at = COLUMNS.index("id"), COLUMNS.index("created_at")
    for batch in source.iter_batches(TimeRange(EARLIEST, end)):
        ids = batch.column(ids_at)
        at = pc.index(ids, pa.scalar(event_id, ids.type)).as_py()
        if at is not None and at >= 0:
            when = batch.column(created_at)[at].as_py()
            return Position(when if when.tzinfo else when.replace(tzinfo=dt.UTC), event_id)
    return None


def ensure_moves_table(store: PositionStore) -> None:
    moves_metadata.create_all(store.engine, checkfirst=True)


def move_position(
    store: PositionStore, sink: str, to: Position | None, *, target: str, reason: str, moved_by: str, lease_seconds: float = 30.0
) -> PositionMove:
    """Set ``sink``'s position to ``to`` under its lease, recording the move; :class:`SinkBusy` while a forwarder holds it."""
    if not reason.strip():
        raise ConfigError("--reason is required: say why the position moves (it is recorded with the move)")
    ensure_moves_table(store)
    holder = new_holder()
    other = store.acquire(sink, holder, lease_seconds)
    if other is not None:
        raise SinkBusy(
            f"sink {sink} is being forwarded by {other.holder} (lease for {other.expires_in:.0f}s more); "
            "stop that forwarder (or its Dagster sensor) and run the seek again"
        )
    try:
        now = time.time()
        with store.engine.begin() as conn:
            row = conn.execute(sa.select(positions_table).where(positions_table.c.sink == sink)).first()
            before = Position(from_epoch_micros(int(row.created_at_us)), row.event_id or "") if row is not None and row.created_at_us is not None else None
            values = {
                "created_at_us": epoch_micros(to.created_at) if to else None,
                "event_id": to.id if to else None,
                "updated_at": now,
            }
            if row is None:
                conn.execute(positions_table.insert().values(sink=sink, delivered=0, dead_lettered=0, dead_letters_pending=0, **values))
            else:
                conn.execute(positions_table.update().where(positions_table.c.sink == sink).values(**values))
            # Counting restarts at the new position: nothing before it is owed any more, and the days from its
            # day on are counted again as they are (re-)delivered.
            conn.execute(counting_table.delete().where(counting_table.c.sink == sink))
            conn.execute(counting_table.insert().values(sink=sink, created_at_us=values["created_at_us"], event_id=values["event_id"], from_start=True))
            stale = delivered_by_day_table.c.sink == sink
            if to is not None:
                stale = stale & (delivered_by_day_table.c.day >= to.created_at.astimezone(dt.UTC).date())
            conn.execute(delivered_by_day_table.delete().where(stale))
            conn.execute(
                moves_table.insert().values(
                    sink=sink,
                    moved_at=now,
                    moved_by=moved_by,
                    reason=reason.strip(),
                    target=target,
                    from_created_at_us=epoch_micros(before.created_at) if before else None,
                    from_event_id=before.id if before else None,
                    to_created_at_us=values["created_at_us"],
                    to_event_id=values["event_id"],
                )
            )
        ledger.forget(store.engine, sink)
    finally:
        store.release(sink, holder)
    return PositionMove(sink, dt.datetime.fromtimestamp(now, dt.UTC), moved_by, reason.strip(), target, before, to)


def moves(store: PositionStore, sink: str | None = None, limit: int = 20) -> list[PositionMove]:
    """The latest recorded moves, newest first (of one sink, or of all)."""
    ensure_moves_table(store)
    query = sa.select(moves_table).order_by(moves_table.c.move.desc()).limit(limit)
    if sink is not None:
        query = query.where(moves_table.c.sink == sink)
    with store.engine.connect() as conn:
        rows = conn.execute(query).fetchall()
    return [
        PositionMove(
            r.sink,
            dt.datetime.fromtimestamp(r.moved_at, dt.UTC),
            r.moved_by,
            r.reason,
            r.target,
            _position(r.from_created_at_us, r.from_event_id),
            _position(r.to_created_at_us, r.to_event_id),
        )
        for r in rows
    ]


def _position(micros: int | None, event_id: str | None) -> Position | None:
    return Position(from_epoch_micros(int(micros)), event_id or "") if micros is not None else None
