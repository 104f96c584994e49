"""The state database's forwarding tables (``state_url``): positions, per-day delivered counts, leases.

One definition shared by :mod:`.positions` (which moves positions and leases) and :mod:`.delivered_counts`
(which keeps the per-day counts retention reads), so both write the same schema in the same transactions.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()
positions_table = sa.Table(
    "audit_pipeline_sink_positions",
    metadata,
    sa.Column("sink", sa.String(200), primary_key=True),
    # NULL created_at: the sink starts before the first event (start: earliest).
    sa.Column("created_at_us", sa.BigInteger, nullable=True),
    sa.Column("event_id", sa.Text, nullable=True),
    sa.Column("delivered", sa.BigInteger, nullable=False, default=0),
    sa.Column("dead_lettered", sa.BigInteger, nullable=False, default=0),
    # Dead-lettered events not yet replayed successfully.
    sa.Column("dead_letters_pending", sa.BigInteger, nullable=False, default=0),
    sa.Column("updated_at", sa.Float, nullable=False),
)
delivered_by_day_table = sa.Table(
    "audit_pipeline_delivered_by_day",
    metadata,
    sa.Column("sink", sa.String(200), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    # Events of the day (UTC) delivered to the sink, or skipped because the sink does not take their type.
    sa.Column("events", sa.BigInteger, nullable=False),
)
counting_table = sa.Table(
    "audit_pipeline_delivery_counting",
    metadata,
    sa.Column("sink", sa.String(200), primary_key=True),
    # The position when per-day counting began (NULL: before the first event).
    sa.Column("created_at_us", sa.BigInteger, nullable=True),
    sa.Column("event_id", sa.Text, nullable=True),
    # True: the sink started there (nothing before it is owed); False: it had delivered up to there uncounted.
    sa.Column("from_start", sa.Boolean, nullable=False),
)
leases_table = sa.Table(
    "audit_pipeline_sink_leases",
    metadata,
    sa.Column("sink", sa.String(200), primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)


def sqlite_immediate_transactions(engine: Engine) -> None:
    """SQLite: take the write lock at BEGIN, so that two processes queue instead of failing on upgrade."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")
