"""PostgreSQL source: Arrow batches through ADBC (binary COPY underneath), keyset order.

ADBC (its low-level API) streams ``COPY (SELECT ...) TO STDOUT (FORMAT binary)`` into Arrow record batches
of bounded size (``adbc.postgresql.batch_size_hint_bytes``), which measured close to
PostgreSQL's own ``COPY ... (FORMAT csv)`` with flat memory.  ``COPY (query)`` needs
only SELECT, so a read-only role is enough.  Small control queries (preflight, counts,
``pg_stat_activity``) go through psycopg.  The bulk-read connection is kept between queries
and passes (opening one costs about a quarter of a second), in autocommit so it never holds a
transaction open between reads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
from sqlalchemy.engine import make_url

from audit_pipeline.core.errors import ConfigError, SourceError, first_line
from audit_pipeline.core.event_filters import EventFilter
from audit_pipeline.core.schema import COLUMNS, conform
from audit_pipeline.sources.base import AuditSource, Position, TimeRange
from audit_pipeline.sources.pg_values import is_pg_network, network_text, plain_text

#: How a column is selected when not as it is: ``country::text`` drops a ``char(n)`` column's padding (for a
#: text column PostgreSQL drops the cast).  ``ip_address`` and ``metadata`` are selected as they are, so the
#: server projects nothing per row; :mod:`audit_pipeline.sources.pg_values` turns their binary form into the
#: text PostgreSQL prints (``10.0.0.1``, ``10.0.0.0/24``; jsonb's own text).
_SELECT_EXPR: dict[str, str] = {
    "country": "country::text",
}


def _select_list() -> str:
    return ", ".join(f"{_SELECT_EXPR[c]} AS {c}" if c in _SELECT_EXPR else c for c in COLUMNS)


def _as_text(batch: pa.RecordBatch) -> pa.RecordBatch:
    """ADBC's binary ``inet``/``cidr`` and ``arrow.json`` columns as PostgreSQL's text."""
    columns = [network_text(column) if is_pg_network(column) else plain_text(column) for column in batch.columns]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def sql_literal(value: str) -> str:
    """A standard-conforming SQL string literal (the only way user text reaches our SQL)."""
    if "\x00" in value:
        raise ConfigError("filter values cannot contain NUL characters")
    return "'" + value.replace("'", "''") + "'"


def _timestamp_literal(value: dt.datetime) -> str:
    return f"'{value.astimezone(dt.UTC).isoformat()}'::timestamptz"


def glob_to_like(pattern: str) -> str:
    """``audit.user.*`` style globs (``*`` and ``?``) as a LIKE pattern with ``\\`` escapes."""
    if "[" in pattern:
        raise ConfigError(f"pattern {pattern!r}: character classes are not supported, use * and ?")
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _any_like(column: str, patterns: tuple[str, ...]) -> str:
    return "(" + " OR ".join(f"{column} LIKE {sql_literal(glob_to_like(p))} ESCAPE '\\'" for p in patterns) + ")"


def filter_sql(event_filter: EventFilter | None) -> list[str]:
    """WHERE conditions for a filter, so that filtering happens in the database."""
    if event_filter is None or event_filter.is_empty:
        return []
    conditions = []
    if event_filter.include_types:
        conditions.append(_any_like("type", event_filter.include_types))
    if event_filter.exclude_types:
        conditions.append("NOT " + _any_like("type", event_filter.exclude_types))
    if event_filter.include_tenants:
        conditions.append(_any_like("coalesce(tenant_id, '')", event_filter.include_tenants))
    if event_filter.exclude_tenants:
        conditions.append("NOT " + _any_like("coalesce(tenant_id, '')", event_filter.exclude_tenants))
    if event_filter.organizations:
        conditions.append("organization_id IN (" + ", ".join(sql_literal(o) for o in event_filter.organizations) + ")")
    return conditions


def _where(time_range: TimeRange, after: Position | None, event_filter: EventFilter | None) -> str:
    conditions = [
        f"created_at >= {_timestamp_literal(time_range.start)}",
        f"created_at < {_timestamp_literal(time_range.end)}",
    ]
    if after is not None:
        ts = _timestamp_literal(after.created_at)
        conditions.append(f'(created_at > {ts} OR (created_at = {ts} AND id COLLATE "C" > {sql_literal(after.id)}))')
    conditions.extend(filter_sql(event_filter))
    return " AND ".join(conditions)


class PostgresSource(AuditSource):
    def __init__(self, url: str, *, table: str = "audit_logs", batch_rows: int = 4_096, setting: str = "AUDIT_DATABASE_URL") -> None:
        try:
            parsed = make_url(url)
        except Exception:
            raise ConfigError(f"{setting} is not a valid database URL (expected postgresql://user@host:5432/dbname)") from None
        if not parsed.drivername.startswith("postgresql"):
            raise ConfigError(f"{setting} must be a postgresql:// URL, got a {parsed.drivername} URL")
        self._libpq_url = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self._setting = setting
        self.description = f"PostgreSQL {parsed.set(drivername='postgresql').render_as_string(hide_password=True)} table {table}"
        self.table = table
        self.batch_rows = batch_rows
        self._conn: psycopg.Connection[Any] | None = None
        #: The bulk-read connection and statement, kept between queries (and passes, while following):
        #: opening an ADBC connection costs about a quarter of a second.
        self._reader: _BulkReader | None = None
        self._reader_lock = threading.Lock()

    # -- control connection ---------------------------------------------------------------
    def _control(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self._libpq_url, autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as exc:
                # libpq's lines (what failed, then a hint), tabs and all, as one readable line
                reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
                raise SourceError(f"cannot connect to the audit database {self.description} ({reason}); check {self._setting}") from None
        return self._conn

    def check(self) -> None:
        conn = self._control()
        schema, _, name = self.table.rpartition(".")
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND (%s = '' OR table_schema = %s)"
            " AND (%s <> '' OR table_schema = ANY (current_schemas(false)))",
            (name, schema, schema, schema),
        ).fetchall()
        if not rows:
            raise SourceError(
                f"table {self.table} not found, or not readable by this role, in {self.description}; check {self._setting} and GRANT SELECT ON {self.table}"
            )
        present = {r[0] for r in rows}
        missing = [c for c in COLUMNS if c not in present]
        if missing:
            raise SourceError(f"table {self.table} lacks column(s) {', '.join(missing)} expected of a HelloJohn audit_logs table ({self.description})")
        try:
            conn.execute(f"SELECT 1 FROM {self.table} LIMIT 0")
        except psycopg.errors.InsufficientPrivilege:
            raise SourceError(f"the role in {self._setting} may not SELECT from {self.table}; GRANT SELECT ON {self.table} TO that role") from None

    def count(self, time_range: TimeRange, event_filter: EventFilter | None = None) -> int:
        row = self._control().execute(f"SELECT count(*) FROM {self.table} WHERE {_where(time_range, None, event_filter)}").fetchone()
        return int(row[0]) if row else 0

    def oldest_open_write_start(self) -> dt.datetime | None:
        """``xact_start`` of the oldest open transaction holding a transaction id (it has written).

        Other roles' rows in ``pg_stat_activity`` are hidden unless this role has
        ``pg_read_all_stats``; then this returns None and only the settle lag protects.
        """
        row = (
            self._control()
            .execute("SELECT min(xact_start) FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND datname = current_database() AND pid <> pg_backend_pid()")
            .fetchone()
        )
        return row[0] if row and row[0] is not None else None

    def oldest_prepared_start(self) -> dt.datetime | None:
        """When the oldest transaction prepared in this database (``PREPARE TRANSACTION``) was prepared.

        A prepared transaction leaves ``pg_stat_activity`` but may still commit rows stamped before
        it; ``pg_prepared_xacts`` lists it until ``COMMIT PREPARED`` or ``ROLLBACK PREPARED``.
        """
        try:
            row = self._control().execute("SELECT min(prepared) FROM pg_prepared_xacts WHERE database = current_database()").fetchone()
        except psycopg.errors.InsufficientPrivilege:
            return None
        return row[0] if row and row[0] is not None else None

    def can_see_prepared_transactions(self) -> bool:
        row = self._control().execute("SELECT has_table_privilege('pg_catalog.pg_prepared_xacts', 'SELECT')").fetchone()
        return bool(row and row[0])

    def count_through(self, start: dt.datetime, position: Position) -> int:
        """Events with ``start <= created_at`` at or before ``position`` in ``(created_at, id)`` order."""
        ts = _timestamp_literal(position.created_at)
        condition = f'created_at >= {_timestamp_literal(start)} AND (created_at < {ts} OR (created_at = {ts} AND id COLLATE "C" <= {sql_literal(position.id)}))'
        row = self._control().execute(f"SELECT count(*) FROM {self.table} WHERE {condition}").fetchone()
        return int(row[0]) if row else 0

    def next_after(self, position: Position | None) -> dt.datetime | None:
        """``created_at`` of the first event after ``position``, however young: a follower's cheap probe between
        passes (one indexed row on the kept control connection; an idle database sees one such query a second)."""
        if position is None:
            row = self._control().execute(f"SELECT min(created_at) FROM {self.table}").fetchone()
        else:
            ts = _timestamp_literal(position.created_at)
            condition = f'created_at >= {ts} AND (created_at > {ts} OR id COLLATE "C" > {sql_literal(position.id)})'
            row = self._control().execute(f"SELECT min(created_at) FROM {self.table} WHERE {condition}").fetchone()
        return row[0] if row and row[0] is not None else None

    def can_see_other_transactions(self) -> bool:
        row = (
            self._control()
            .execute("SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') FROM pg_roles WHERE rolname = current_user")
            .fetchone()
        )
        return bool(row and row[0])

    def now(self) -> dt.datetime:
        row = self._control().execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        value: dt.datetime = row[0]
        return value

    # -- bulk reads --------------------------------------------------------------------------
    def iter_batches(
        self,
        time_range: TimeRange,
        *,
        after: Position | None = None,
        limit: int | None = None,
        event_filter: EventFilter | None = None,
    ) -> Iterator[pa.RecordBatch]:
        query = f'SELECT {_select_list()} FROM {self.table} WHERE {_where(time_range, after, event_filter)} ORDER BY created_at, id COLLATE "C"'
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        reader = self._take_reader()
        finished = False
        try:
            try:
                stream = reader.read(query)
            except Exception as exc:
                raise SourceError(f"reading {self.table} from {self.description} failed: {first_line(exc)}") from None
            for batch in stream:
                if batch.num_rows:
                    yield conform(_as_text(batch))
            finished = True
        finally:
            self._give_back(reader, keep=finished)

    def _take_reader(self) -> _BulkReader:
        """The kept bulk-read connection when it is free, else a new one (another thread is reading)."""
        with self._reader_lock:
            kept, self._reader = self._reader, None
        if kept is not None:
            return kept
        try:
            return _BulkReader(self._libpq_url, max(1, self.batch_rows) * 600)
        except Exception as exc:  # ADBC raises its own error hierarchy
            raise SourceError(f"cannot connect to the audit database {self.description} ({first_line(exc)}); check {self._setting}") from None

    def _give_back(self, reader: _BulkReader, *, keep: bool) -> None:
        """Keep a connection whose result was read to the end; close one abandoned mid-stream (its COPY is still running)."""
        if keep:
            with self._reader_lock:
                if self._reader is None:
                    self._reader = reader
                    return
        reader.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def close(self) -> None:
        with self._reader_lock:
            kept, self._reader = self._reader, None
        if kept is not None:
            self._give_back(kept, keep=False)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _BulkReader:
    """One ADBC connection and its statement, reused query after query.

    ADBC's low-level API is used rather than its DB-API module, which imports pandas (about
    40 MB of memory for nothing here).  ADBC connections are in autocommit, so no transaction
    stays open between reads.
    """

    def __init__(self, url: str, batch_bytes: int) -> None:
        import adbc_driver_manager
        import adbc_driver_postgresql

        self._database = adbc_driver_postgresql.connect(url)
        try:
            self._connection = adbc_driver_manager.AdbcConnection(self._database)
            self._statement = adbc_driver_manager.AdbcStatement(self._connection)
            # ~600 bytes a row: batches of about batch_rows rows, bounded in bytes either way.
            self._statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(batch_bytes)})
        except Exception:
            self.close()
            raise

    def read(self, query: str) -> pa.RecordBatchReader:
        self._statement.set_sql_query(query)
        handle, _ = self._statement.execute_query()
        return pa.RecordBatchReader._import_from_c(handle.address)

    def close(self) -> None:
        for name in ("_statement", "_connection", "_database"):
            handle = getattr(self, name, None)
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
                setattr(self, name, None)
