"""Rows of ``audit_logs``: counted per UTC day, deleted by exported id in small committed batches.

Retention deletes only ids it read back from a verified export of the day, in statements
of ``retention.batch_rows`` ids (10,000 by default), each committed on its own: a
statement holds its row locks and writes its WAL for a bounded time, and a crash loses at
most the statement in flight (the next run continues where this one stopped).  Because
only exported ids are named, a row inserted into an old day while retention runs is never
deleted by accident; it stays and is reported.

The connection is ``retention.database_url``: a role that may SELECT and DELETE, since the
export role only reads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from audit_pipeline.core.errors import ConfigError, SourceError

SETTING = "retention.database_url"


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


class RetentionDatabase:
    def __init__(self, url: SecretStr, table: str = "audit_logs") -> None:
        try:
            parsed = make_url(url.get_secret_value())
        except Exception:
            raise ConfigError(f"{SETTING} is not a valid database URL (expected postgresql://user@host:5432/dbname)") from None
        if not parsed.drivername.startswith("postgresql"):
            raise ConfigError(f"{SETTING} must be a postgresql:// URL, got a {parsed.drivername} URL")
        self._url = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self.description = parsed.set(drivername="postgresql").render_as_string(hide_password=True)
        self.table = table
        schema, _, name = table.rpartition(".")
        self._table = sql.Identifier(schema, name) if schema else sql.Identifier(name)
        self._conn: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as exc:
                reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                raise SourceError(f"cannot connect to {self.description} for retention ({reason}); check {SETTING}") from None
            self._conn.execute("SET TIME ZONE 'UTC'")
        return self._conn

    def check(self, deleting: bool) -> None:
        """The table exists and the role may read it (and delete from it, for a real run)."""
        conn = self._connect()
        try:
            allowed = conn.execute(
                "SELECT has_table_privilege(current_user, %s, 'SELECT'), has_table_privilege(current_user, %s, 'DELETE')", (self.table, self.table)
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            raise SourceError(f"table {self.table} does not exist in {self.description} ({SETTING})") from None
        assert allowed is not None
        if not allowed[0] or (deleting and not allowed[1]):
            raise SourceError(
                f"the role in {SETTING} ({self.description}) may not {'DELETE from' if allowed[0] else 'SELECT from'} {self.table}: "
                f"GRANT SELECT, DELETE ON {self.table} TO that role (keep the export role read-only)"
            )

    def now(self) -> dt.datetime:
        """The database's clock (``created_at`` of new rows comes from it)."""
        row = self._connect().execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        value: dt.datetime = row[0]
        return value.astimezone(dt.UTC)

    def rows_after(self, day: dt.date, created_at: dt.datetime, event_id: str) -> int:
        """Rows of ``day`` after the position ``(created_at, id)``: what a sink that started there owes."""
        query = sql.SQL(
            'SELECT count(*) FROM {} WHERE created_at >= %s AND created_at < %s AND (created_at > %s OR (created_at = %s AND id COLLATE "C" > %s))'
        ).format(self._table)
        row = self._connect().execute(query, (_midnight(day), _midnight(day + dt.timedelta(days=1)), created_at, created_at, event_id)).fetchone()
        return int(row[0]) if row else 0

    def rows_per_day(self, before: dt.date) -> list[tuple[dt.date, int]]:
        """Days before ``before`` that still hold rows, oldest first, with their row counts."""
        query = sql.SQL("SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) FROM {} WHERE created_at < %s GROUP BY 1 ORDER BY 1").format(self._table)
        return [(row[0], int(row[1])) for row in self._connect().execute(query, (_midnight(before),)).fetchall()]

    def rows_of_day(self, day: dt.date) -> int:
        query = sql.SQL("SELECT count(*) FROM {} WHERE created_at >= %s AND created_at < %s").format(self._table)
        row = self._connect().execute(query, (_midnight(day), _midnight(day + dt.timedelta(days=1)))).fetchone()
        return int(row[0]) if row else 0

    def delete_ids(self, day: dt.date, batches: Iterable[Sequence[str]]) -> int:
        """Delete the rows of ``day`` with these ids, one committed statement per batch; returns rows deleted."""
        statement = sql.SQL("DELETE FROM {} WHERE created_at >= %s AND created_at < %s AND id = ANY(%s)").format(self._table)
        start, end = _midnight(day), _midnight(day + dt.timedelta(days=1))
        conn = self._connect()
        deleted = 0
        for ids in batches:
            if not ids:
                continue
            try:
                with conn.transaction():
                    deleted += conn.execute(statement, (start, end, list(ids))).rowcount
            except psycopg.errors.InsufficientPrivilege:
                raise SourceError(f"the role in {SETTING} may not DELETE from {self.table}: GRANT SELECT, DELETE ON {self.table} TO that role") from None
        return deleted

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> RetentionDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
