"""The late-commit ledger: which events a sink was handed, for the trailing ``late_window``.

One compact row per committed batch (its ids and their ``created_at`` in microseconds, each
zlib-compressed), written in the same transaction as the position it belongs to, and pruned
once the window has moved past it.  The sweep (:mod:`.sweep`) compares it with what the
source holds behind the position now: an id it cannot find there was committed late and has
not been delivered yet.

Where the ledger's knowledge begins is recorded per sink (``audit_pipeline_sink_ledger_start``):
a new sink's ledger covers everything from where it starts (from the first event for
``start: earliest``), so a row stamped before the first event a sink received but committed
later is still found.  A sink forwarded before this was recorded (or with the sweep off for a
while) is covered from the first event after its position at that moment; pruning moves the
start up to the edge of what is kept.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.sinks.base import EventBatch

metadata = sa.MetaData()
ledger_table = sa.Table(
    "audit_pipeline_sink_ledger",
    metadata,
    sa.Column("entry", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sink", sa.String(200), nullable=False, index=True),
    sa.Column("first_us", sa.BigInteger, nullable=False),
    sa.Column("last_us", sa.BigInteger, nullable=False),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("micros", sa.LargeBinary, nullable=False),
    sa.Column("ids", sa.LargeBinary, nullable=False),
)
start_table = sa.Table(
    "audit_pipeline_sink_ledger_start",
    metadata,
    sa.Column("sink", sa.String(200), primary_key=True),
    # The ledger knows every event handed to the sink from this created_at on (microseconds); NULL: from the first event.
    sa.Column("covered_from_us", sa.BigInteger, nullable=True),
)
_SEPARATOR = b"\x00"  # never inside a PostgreSQL text value


@dataclass(frozen=True)
class LedgerEntry:
    first_us: int
    last_us: int
    events: int
    #: Empty when read without them (:func:`entries` with ``detail=False``).
    micros: bytes
    ids: bytes

    @classmethod
    def of(cls, events: EventBatch) -> LedgerEntry:
        """The entry of a committed batch, built column-wise: the ids are joined by an Arrow kernel,
        not turned into Python strings one by one (that cost about 0.5 us per event on every commit)."""
        micros = np.asarray(events.batch.column(COLUMNS.index("created_at")).cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
        ids = events.batch.column(COLUMNS.index("id"))
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(ids)], pa.int32()), ids), _SEPARATOR.decode())[0].as_buffer()
        return cls(
            int(micros.min()), int(micros.max()), len(micros), zlib.compress(micros.tobytes(), 1), zlib.compress(joined if joined is not None else b"", 1)
        )

    def created_us(self) -> np.ndarray:
        return np.frombuffer(zlib.decompress(self.micros), dtype=np.int64)

    def id_list(self) -> list[str]:
        return [v.decode() for v in zlib.decompress(self.ids).split(_SEPARATOR)] if self.events else []


def record(conn: sa.Connection, sink: str, entry: LedgerEntry, prune_before_us: int, current: tuple[int, str] | None) -> None:
    """Add a batch's entry and drop those wholly older than the window (same transaction as the position).

    ``current``: the sink's position before this batch (microseconds, id), where the ledger's
    coverage begins when none was recorded yet (a sink forwarded before the ledger kept its start).
    """
    if conn.execute(sa.select(start_table.c.sink).where(start_table.c.sink == sink)).first() is None:
        first = conn.execute(sa.select(sa.func.min(ledger_table.c.first_us)).where(ledger_table.c.sink == sink)).scalar()
        begins: int | None
        if first is not None:
            begins = int(first) + 1  # ties with the first entry's first event may predate the ledger
        elif current is None:
            begins = None
        else:
            begins = current[0] + (1 if current[1] else 0)  # an id-less start position delivered nothing at its own time
        conn.execute(start_table.insert().values(sink=sink, covered_from_us=begins))
    conn.execute(
        ledger_table.insert().values(sink=sink, first_us=entry.first_us, last_us=entry.last_us, events=entry.events, micros=entry.micros, ids=entry.ids)
    )
    pruned = conn.execute(ledger_table.delete().where(ledger_table.c.sink == sink, ledger_table.c.last_us < prune_before_us)).rowcount
    if pruned:
        # Every event at or after the edge is in an entry that was kept; older ones may have gone with the pruned ones.
        conn.execute(
            start_table.update()
            .where(start_table.c.sink == sink, sa.or_(start_table.c.covered_from_us.is_(None), start_table.c.covered_from_us < prune_before_us))
            .values(covered_from_us=prune_before_us)
        )


def begin(conn: sa.Connection, sink: str, covered_from_us: int | None) -> None:
    """A new sink's ledger covers every event from where it starts (None: from the first event)."""
    conn.execute(start_table.delete().where(start_table.c.sink == sink))
    conn.execute(start_table.insert().values(sink=sink, covered_from_us=covered_from_us))


def stop_covering(conn: sa.Connection, sink: str) -> None:
    """A batch was committed without a ledger entry (the sweep is off): what the ledger holds is no longer complete."""
    conn.execute(start_table.delete().where(start_table.c.sink == sink))
    conn.execute(ledger_table.delete().where(ledger_table.c.sink == sink))


@dataclass(frozen=True)
class Coverage:
    """Since when the ledger knows every event handed to a sink: ``from_us`` None is from the first event."""

    from_us: int | None


def coverage(engine: sa.Engine, sink: str) -> Coverage | None:
    """Where the sink's ledger coverage begins; None when not recorded (a sink forwarded before it was)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(start_table.c.covered_from_us).where(start_table.c.sink == sink)).first()
    if row is None:
        return None
    return Coverage(None if row[0] is None else int(row[0]))


def entries(engine: sa.Engine, sink: str, since_us: int, *, detail: bool = True, micros_before_us: int | None = None) -> list[LedgerEntry]:
    """Entries with events at or after ``since_us``, oldest first.

    ``detail=False`` leaves out the ids and the timestamps (the sweep's frequent check needs only
    the counts: at 5,000 events/s a 15-minute window holds tens of megabytes of ids), except the
    timestamps of entries that begin before ``micros_before_us``.
    """
    columns: list[Any] = [ledger_table.c.first_us, ledger_table.c.last_us, ledger_table.c.events]
    if detail:
        columns += [ledger_table.c.micros, ledger_table.c.ids]
    elif micros_before_us is not None:
        columns.append(sa.case((ledger_table.c.first_us < micros_before_us, ledger_table.c.micros), else_=sa.null()).label("micros"))
    query = sa.select(*columns).where(ledger_table.c.sink == sink, ledger_table.c.last_us >= since_us).order_by(ledger_table.c.first_us)
    with engine.connect() as conn:
        rows = conn.execute(query).fetchall()
    found = []
    for r in rows:
        micros = r._mapping.get("micros")
        found.append(LedgerEntry(int(r.first_us), int(r.last_us), int(r.events), bytes(micros or b""), bytes(r.ids) if detail else b""))
    return found


def forget(engine: sa.Engine, sink: str) -> None:
    """Drop a sink's ledger (its position was reset); it covers again from the position of its next batch."""
    with engine.begin() as conn:
        stop_covering(conn, sink)


late_table = sa.Table(
    "audit_pipeline_sink_late",
    metadata,
    sa.Column("sink", sa.String(200), primary_key=True),
    sa.Column("late_events", sa.BigInteger, nullable=False),
)


def count_late(conn: sa.Connection, sink: str, events: int) -> None:
    """Add to the sink's total of events found committed behind its position (same transaction)."""
    updated = conn.execute(late_table.update().where(late_table.c.sink == sink).values(late_events=late_table.c.late_events + events)).rowcount
    if not updated:
        conn.execute(late_table.insert().values(sink=sink, late_events=events))


def late_total(engine: sa.Engine, sink: str) -> int:
    """How many late events the sweep has delivered to the sink so far."""
    with engine.connect() as conn:
        value = conn.execute(sa.select(late_table.c.late_events).where(late_table.c.sink == sink)).scalar()
    return int(value or 0)
