"""The embedded demo HelloJohn database: SQLite through SQLAlchemy, seeded with synthetic events.

It lets ``audit-pipeline demo`` and ``dagster dev`` run on a fresh machine with no server.
``created_at`` is stored as integer microseconds since the epoch (UTC) so that SQLite
orders it exactly; ``metadata`` is stored in PostgreSQL's jsonb text form.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from audit_pipeline.config.settings import DEFAULT_STATE_DIR
from audit_pipeline.core.event_filters import EventFilter
from audit_pipeline.core.isotime import epoch_micros
from audit_pipeline.core.jsontext import jsonb_text
from audit_pipeline.core.schema import ARROW_SCHEMA, COLUMNS, REQUIRED
from audit_pipeline.sources.base import AuditSource, Position, TimeRange
from audit_pipeline.sources.synthetic import generate_events

DEMO_DAYS = tuple(dt.date(2024, 1, 13) + dt.timedelta(days=i) for i in range(4))
DEMO_EVENTS_PER_DAY = 2_000

metadata_obj = sa.MetaData()
audit_logs = sa.Table(
    "audit_logs",
    metadata_obj,
    # The columns and their NOT NULL from the schema; created_at as epoch microseconds (SQLite has no timestamp type).
    *(
        sa.Column(c, sa.BigInteger if c == "created_at" else sa.Text, primary_key=c == "id", nullable=c not in REQUIRED, index=c == "created_at")
        for c in COLUMNS
    ),
)


class DemoSource(AuditSource):
    def __init__(self, path: Path, batch_rows: int = 16_384) -> None:
        self.path = path
        self.batch_rows = batch_rows
        self.description = f"demo database {path}"
        self.engine = sa.create_engine(f"sqlite:///{path}")

    @classmethod
    def default(cls, batch_rows: int = 16_384) -> DemoSource:
        path = Path(DEFAULT_STATE_DIR) / "demo.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        source = cls(path.resolve(), batch_rows)
        source.seed()
        return source

    def seed(self, days: Iterable[dt.date] = DEMO_DAYS, per_day: int = DEMO_EVENTS_PER_DAY) -> None:
        """Create the table and fill the demo days once (idempotent)."""
        metadata_obj.create_all(self.engine)
        with self.engine.begin() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(audit_logs)).scalar_one():
                return
            for day in days:
                self.insert(conn, generate_events(day, per_day))

    @staticmethod
    def insert(conn: sa.Connection, events: Iterable[dict[str, Any]]) -> None:
        rows = []
        for event in events:
            row = dict(event)
            row["created_at"] = epoch_micros(event["created_at"])
            row["metadata"] = event["metadata"] if isinstance(event["metadata"], str) else jsonb_text(event["metadata"])
            rows.append(row)
        if rows:
            conn.execute(audit_logs.insert(), rows)

    def check(self) -> None:
        sa.inspect(self.engine).get_columns("audit_logs")

    def _select(self, time_range: TimeRange, after: Position | None, event_filter: EventFilter | None) -> sa.Select[Any]:
        t = audit_logs.c
        query = sa.select(*[t[c] for c in COLUMNS]).where(t.created_at >= epoch_micros(time_range.start), t.created_at < epoch_micros(time_range.end))
        if after is not None:
            at = epoch_micros(after.created_at)
            query = query.where(sa.or_(t.created_at > at, sa.and_(t.created_at == at, t.id > after.id)))
        if event_filter is not None and not event_filter.is_empty:
            f = event_filter
            if f.include_types:
                query = query.where(sa.or_(*[t.type.op("GLOB")(p) for p in f.include_types]))
            for p in f.exclude_types:
                query = query.where(sa.not_(t.type.op("GLOB")(p)))
            tenant = sa.func.coalesce(t.tenant_id, "")
            if f.include_tenants:
                query = query.where(sa.or_(*[tenant.op("GLOB")(p) for p in f.include_tenants]))
            for p in f.exclude_tenants:
                query = query.where(sa.not_(tenant.op("GLOB")(p)))
            if f.organizations:
                query = query.where(t.organization_id.in_(f.organizations))
        return query

    def count(self, time_range: TimeRange, event_filter: EventFilter | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(self._select(time_range, None, event_filter).subquery())
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def iter_batches(
        self,
        time_range: TimeRange,
        *,
        after: Position | None = None,
        limit: int | None = None,
        event_filter: EventFilter | None = None,
    ) -> Iterator[pa.RecordBatch]:
        query = self._select(time_range, after, event_filter).order_by(audit_logs.c.created_at, audit_logs.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(query)
            while rows := result.fetchmany(self.batch_rows):
                columns = list(zip(*rows, strict=True))
                arrays = []
                for name, values in zip(COLUMNS, columns, strict=True):
                    field = ARROW_SCHEMA.field(name)
                    if name == "created_at":
                        arrays.append(pa.array(values, pa.int64()).cast(field.type))
                    else:
                        arrays.append(pa.array(values, field.type))
                yield pa.RecordBatch.from_arrays(arrays, schema=ARROW_SCHEMA)

    def close(self) -> None:
        self.engine.dispose()
