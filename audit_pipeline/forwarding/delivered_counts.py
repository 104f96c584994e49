"""Per-sink, per-UTC-day counts of delivered events, kept in the same transaction as the position.

Retention compares them with a day's rows before deleting it: a position only says how far a sink
got, not that every event behind it arrived.  ``counting_table`` records where counting began for
each sink, so that days before it are told apart from undelivered ones.  The functions take the
caller's connection: :class:`~audit_pipeline.forwarding.positions.PositionStore` calls them inside the
transaction that moves the position.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from audit_pipeline.core.isotime import epoch_micros, from_epoch_micros
from audit_pipeline.forwarding.state_tables import counting_table, delivered_by_day_table
from audit_pipeline.sources.base import Position


@dataclass(frozen=True)
class CountingStart:
    """Where a sink's per-day delivered counts begin."""

    #: None: before the first event, so every day is counted.
    position: Position | None
    #: True when the sink started at ``position`` (events before it are not owed to it).
    from_start: bool


def events_by_day(batch: pa.RecordBatch, leave_out: Iterable[int] = ()) -> dict[dt.date, int]:
    """How many events of ``batch`` fall on each UTC day, leaving out the rows at ``leave_out``."""
    created = batch.column(batch.schema.get_field_index("created_at"))
    excluded = sorted(set(leave_out))
    if excluded:
        keep = [True] * len(created)
        for i in excluded:
            keep[i] = False
        created = created.filter(pa.array(keep))
    if not len(created):
        return {}
    days = pc.cast(pc.cast(created, pa.timestamp("us", "UTC")), pa.date32())
    counts = pc.value_counts(days)
    return {day: int(n) for day, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)}


def start_counting(conn: sa.Connection, sink: str, current: Position | None) -> None:
    """A sink initialised before per-day counts were kept starts counting at its current position."""
    if conn.execute(sa.select(counting_table.c.sink).where(counting_table.c.sink == sink)).first() is None:
        conn.execute(
            counting_table.insert().values(
                sink=sink,
                created_at_us=epoch_micros(current.created_at) if current else None,
                event_id=current.id if current else None,
                from_start=current is None,
            )
        )


def add_day_counts(conn: sa.Connection, sink: str, per_day: Mapping[dt.date, int]) -> None:
    """Add a batch's events per UTC day to the sink's counts."""
    table = delivered_by_day_table
    for day, events in sorted(per_day.items()):
        if not events:
            continue
        where = (table.c.sink == sink) & (table.c.day == day)
        if conn.execute(table.update().where(where).values(events=table.c.events + events)).rowcount == 0:
            conn.execute(table.insert().values(sink=sink, day=day, events=events))


def day_count(conn: sa.Connection, sink: str, day: dt.date) -> int:
    table = delivered_by_day_table
    value = conn.execute(sa.select(table.c.events).where(table.c.sink == sink, table.c.day == day)).scalar()
    return int(value or 0)


def counting_start(conn: sa.Connection, sink: str) -> CountingStart | None:
    row = conn.execute(sa.select(counting_table).where(counting_table.c.sink == sink)).first()
    if row is None:
        return None
    position = Position(from_epoch_micros(int(row.created_at_us)), row.event_id or "") if row.created_at_us is not None else None
    return CountingStart(position, bool(row.from_start))
