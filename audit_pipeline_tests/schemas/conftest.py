"""Fixtures for the schema mappings: the compiled OCSF schemas and a realistic day of audit events.

The OCSF schemas are compiled from ``../shared/reference/ocsf-schema-<version>`` with ocsf-lib when
both are at hand (a developer machine), once per session into a temporary directory; on a clean
clone (CI) the same compiled schemas, cut down as ``data/ocsf_subset.py`` documents, are read from
``data/``.  ``test_ocsf.py`` checks the two agree whenever both exist.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from audit_pipeline.core.jsontext import jsonb_text
from audit_pipeline.core.schema import ARROW_SCHEMA, COLUMNS
from audit_pipeline.sinks.base import EventBatch
from audit_pipeline.sources.synthetic import generate_events

DATA = Path(__file__).parent / "data"
REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
VERSIONS = ("1.1.0", "1.8.0")
DAY = dt.date(2024, 1, 15)


def can_compile(version: str) -> bool:
    try:
        compiler = importlib.util.find_spec("ocsf.compile")  # ocsf-lib; a leftover empty ocsf/ folder is not it
    except ImportError:
        compiler = None
    return compiler is not None and (REFERENCE / f"ocsf-schema-{version}").is_dir()


def compile_schema(version: str, into: Path) -> dict[str, Any]:
    """``python -m ocsf.compile`` of the shipped schema, then the documented cut (data/ocsf_subset.py)."""
    full, cut = into / f"ocsf-{version}-full.json", into / f"ocsf-{version}.json"
    with full.open("wb") as sink:
        subprocess.run([sys.executable, "-B", "-m", "ocsf.compile", str(REFERENCE / f"ocsf-schema-{version}")], stdout=sink, check=True)
    with full.open("rb") as source, cut.open("wb") as sink:  # -B: no __pycache__ in the checkout
        subprocess.run([sys.executable, "-B", str(DATA / "ocsf_subset.py")], stdin=source, stdout=sink, check=True)
    result: dict[str, Any] = json.loads(cut.read_text())
    return result


@pytest.fixture(scope="session")
def ocsf_schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    for version in VERSIONS:
        if can_compile(version):
            schemas[version] = compile_schema(version, tmp_path_factory.mktemp(f"ocsf-{version}"))
        else:
            schemas[version] = json.loads((DATA / f"ocsf-{version}.json").read_text())
    return schemas


def edge_events() -> list[dict[str, Any]]:
    """Rows a realistic day also holds: NULLs everywhere allowed, IPv6, netmasks, unknown types, odd e-mails."""
    at = dt.datetime(2024, 1, 15, 23, 59, 59, 999999, tzinfo=dt.UTC)
    base: dict[str, Any] = dict.fromkeys(COLUMNS)
    base.update(result="success", created_at=at, metadata="{}")
    rows = [
        {"id": "alog_edge_nulls", "type": "user.login"},
        {
            "id": "alog_edge_v6",
            "type": "user.login_failed",
            "ip_address": "2001:db8::1",
            "country": "DE",
            "result": "failure",
            "metadata": '{"reason": "invalid_password"}',
        },
        {"id": "alog_edge_mapped_v4", "type": "user.logout", "ip_address": "::ffff:192.0.2.1", "actor_type": "user", "actor_id": "usr_1"},
        {"id": "alog_edge_mask", "type": "user.login", "ip_address": "203.0.113.0/24", "actor_email": "example.com", "actor_type": "user"},
        {"id": "alog_edge_hash", "type": "user.signup", "actor_email": "a" * 64, "actor_type": "user", "resource_type": "user", "resource_id": "usr_9"},
        {"id": "alog_edge_unicode", "type": "user.password_changed", "actor_email": "zoë.kim@example.org", "actor_type": "user", "actor_id": "usr_2"},
        {"id": "alog_edge_unknown", "type": "widget.frobnicated", "actor_type": "robot", "tenant_id": "ten_x"},
        {"id": "alog_edge_verb", "type": "client.created", "resource_type": "client", "resource_id": "cli_1", "actor_type": "admin", "actor_id": "adm_1"},
        {"id": "alog_edge_conn", "type": "connection.deleted", "actor_type": "admin"},
        {"id": "alog_edge_result", "type": "user.login", "result": "error", "country": "US"},
        {"id": "alog_edge_bigint", "type": "role.assigned", "metadata": '{"n": 123456789012345678901234567890, "role": "admin"}'},
        {"id": "alog_edge_target", "type": "org.member_added", "organization_id": "org_1", "metadata": '{"user_id": "usr_77"}'},
        {"id": "alog_edge_org_none", "type": "org.member_removed"},
        {"id": "alog_edge_mfa", "type": "user.mfa_removed", "actor_type": "admin", "actor_id": "adm_2", "resource_type": "user", "resource_id": "usr_3"},
        {"id": "alog_edge_passkey", "type": "user.passkey_login", "actor_type": "user", "actor_id": "usr_4", "ip_address": "198.51.100.7"},
    ]
    return [{**base, **row} for row in rows]


def day_rows(count: int = 2_000) -> list[dict[str, Any]]:
    rows = []
    for event in generate_events(DAY, count):
        event["metadata"] = jsonb_text(event["metadata"])
        rows.append(event)
    return rows + edge_events()


def as_batch(rows: list[dict[str, Any]]) -> EventBatch:
    return EventBatch(pa.RecordBatch.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=ARROW_SCHEMA))


@pytest.fixture(scope="session")
def realistic_day() -> EventBatch:
    """2,000 synthetic events (every type the synthetic source and the demo produce) and the edge rows."""
    return as_batch(day_rows())
