"""``audit-pipeline config check --connect``: reach everything the configuration names, one line per check.

``config check`` alone proves the file is well-formed; a role that does not exist or a bucket
that was never created only shows at the first run.  This reaches each part the way a run
would and says, for each, what it saw and which setting to fix:

* the source: connect, find the table with HelloJohn's columns, ``SELECT`` from it; for
  PostgreSQL also whether the role sees other sessions in ``pg_stat_activity`` (needed by
  ``forwarding.watch_open_transactions``) and ``pg_prepared_xacts`` (a warning, not a failure:
  forwarding then relies on the settle lag alone);
* the export store: the bucket (or folder) exists, and a probe object is written (with the
  configured server-side encryption) and deleted again;
* the state database: connect and query;
* each enabled sink's health endpoint with its credentials (:mod:`audit_pipeline.sinks.health`).

Nothing is exported, forwarded or left behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from audit_pipeline.config.settings import PostgresSourceSettings, Settings
from audit_pipeline.core.errors import AuditPipelineError, first_line
from audit_pipeline.core.redaction import redact

Status = Literal["ok", "warn", "FAIL"]

#: Where the probe object goes, under the export root; removed right after it is written.
PROBE_PREFIX = ".audit-pipeline-probe-"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, how it went, what was seen, the setting to fix."""

    status: Status
    what: str
    detail: str
    setting: str = ""

    def line(self, width: int = 18) -> str:
        fix = f" -> fix {self.setting}" if self.setting and self.status != "ok" else ""
        return redact(f"{self.status:<4}  {self.what:<{width}}  {self.detail}{fix}")


def _source(settings: Settings) -> Iterator[Check]:
    if isinstance(settings.source, PostgresSourceSettings):
        yield from _postgres(settings.source, settings.forwarding.watch_open_transactions)
        return
    from audit_pipeline.sources.registry import open_source

    setting = "source" if settings.source_kind == "hellojohn_api" else "source (none configured: the embedded demo database)"
    try:
        source = open_source(settings)
        try:
            source.check()
        finally:
            source.close()
    except AuditPipelineError as exc:
        yield Check("FAIL", "source", first_line(exc), "source.base_url / source.secret_key" if settings.source_kind == "hellojohn_api" else setting)
        return
    except Exception as exc:
        yield Check("FAIL", "source", f"{type(exc).__name__}: {first_line(exc)}", setting)
        return
    yield Check("ok", "source", f"{source.description}: readable")


def _postgres(config: PostgresSourceSettings, watch_open_transactions: bool) -> Iterator[Check]:
    from audit_pipeline.sources.postgres import PostgresSource

    setting = "source.database_url (AUDIT_DATABASE_URL)"
    try:
        source = PostgresSource(config.database_url.get_secret_value(), table=config.table, setting=setting)
    except AuditPipelineError as exc:
        yield Check("FAIL", "source", first_line(exc), setting)
        return
    try:
        try:
            source.check()
        except AuditPipelineError as exc:
            yield Check("FAIL", "source", str(exc).split("; check ")[0], setting if "GRANT" not in str(exc) else f"{setting} or GRANT SELECT ON {config.table}")
            return
        yield Check("ok", "source", f"{source.description}: the role may SELECT from it")
        if source.can_see_other_transactions():
            yield Check("ok", "source", "pg_stat_activity shows other roles' transactions (forwarding holds back behind open writes)")
        elif watch_open_transactions:
            yield Check(
                "warn",
                "source",
                "pg_stat_activity hides other roles' transactions from this role, so forwarding relies on forwarding.settle_seconds alone;"
                " GRANT pg_read_all_stats TO the role",
                "forwarding.watch_open_transactions",
            )
        if source.can_see_prepared_transactions():
            yield Check("ok", "source", "pg_prepared_xacts readable (prepared transactions are waited for)")
        else:
            yield Check("warn", "source", "pg_prepared_xacts is not readable by this role; GRANT SELECT ON pg_catalog.pg_prepared_xacts TO the role", setting)
    finally:
        source.close()


def _export_store(settings: Settings) -> Iterator[Check]:
    from audit_pipeline.storage.object_store import ObjectStore

    setting = "export.url (AUDIT_EXPORT_URL)"
    try:
        store = ObjectStore.from_settings(settings.export)
    except AuditPipelineError as exc:
        yield Check("FAIL", "export store", first_line(exc), setting)
        return
    if store.is_local and not os.path.isdir(store.root):
        parent = next((p for p in Path(store.root).parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK):
            yield Check("ok", "export store", f"{store.uri('')} does not exist yet; the first export creates it (under {parent}, writable)")
        else:
            yield Check("FAIL", "export store", f"{store.uri('')} does not exist and {parent} is not writable", setting)
        return
    if not store.is_local:
        try:
            store.check_writable()  # the bucket exists and answers
        except AuditPipelineError as exc:
            reason = first_line(exc).split("; check ")[0].removesuffix(f" ({store.setting})")
            credentials = "credentials" in reason.lower() or "access denied" in reason.lower()
            yield Check("FAIL", "export store", reason, "the AWS credentials (AWS_ACCESS_KEY_ID/AWS_PROFILE) or the bucket policy" if credentials else setting)
            return
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    sse = f", SSE {settings.export.s3_sse} accepted" if not store.is_local and settings.export.s3_sse != "none" else ""
    try:
        store.put_bytes(key, b"audit-pipeline connection check; safe to delete\n", "text/plain")
    except AuditPipelineError as exc:
        yield Check("FAIL", "export store", f"cannot write a probe object: {first_line(exc)}", setting if not sse else f"{setting} / export.s3_sse")
        return
    try:
        store.delete(key)
        gone = not store.exists(key)
    except AuditPipelineError as exc:
        yield Check("FAIL", "export store", f"wrote a probe object but cannot delete it ({first_line(exc)}); remove {store.uri(key)} by hand", setting)
        return
    if not gone:
        yield Check("FAIL", "export store", f"the probe object {store.uri(key)} is still there after deleting it", setting)
        return
    yield Check("ok", "export store", f"{store.uri('')}: wrote and deleted a probe object{sse}")


def _state_database(settings: Settings) -> Iterator[Check]:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    setting = "state_url (AUDIT_STATE_URL)"
    url = settings.resolved_state_url()
    shown = make_url(url).render_as_string(hide_password=True)
    engine = sa.create_engine(url, connect_args={"connect_timeout": 10} if url.startswith("postgresql") else {})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            tables = set(sa.inspect(conn).get_table_names())
        note = "sink positions kept there" if "audit_pipeline_sink_positions" in tables else "no sink positions yet (created on first forward)"
        yield Check("ok", "state database", f"{shown}: connected, {note}")
    except Exception as exc:
        reason = "; ".join(line.strip() for line in str(getattr(exc, "orig", None) or exc).splitlines() if line.strip())[:300]
        yield Check("FAIL", "state database", f"cannot use {shown} ({reason or type(exc).__name__})", setting)
    finally:
        engine.dispose()


def _sinks(settings: Settings, timeout: float) -> Iterator[Check]:
    from audit_pipeline.sinks import health

    for kind, where, section in settings.sinks.sections():
        name = f"webhook:{getattr(section, 'name', '?')}" if kind == "webhooks" else kind
        label = f"sink {name}"
        if not section.enabled:
            yield Check("ok", label, f"disabled ({where}.enabled: false); not checked")
            continue
        try:
            probes = health.probe(kind, section, where, timeout)
        except Exception as exc:
            yield Check("FAIL", label, f"{type(exc).__name__}: {first_line(exc)}", where)
            continue
        for result in probes:
            yield Check("ok" if result.ok else "FAIL", label, result.detail, result.setting)


def connection_checks(settings: Settings, *, timeout: float = 10.0) -> Iterator[Check]:
    """Every check, in order: source, export store, state database, sinks; each yields as soon as it is known."""
    parts: list[Callable[[], Iterator[Check]]] = [
        lambda: _source(settings),
        lambda: _export_store(settings),
        lambda: _state_database(settings),
        lambda: _sinks(settings, timeout),
    ]
    for part in parts:
        yield from part()
