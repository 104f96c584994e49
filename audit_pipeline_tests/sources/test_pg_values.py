"""inet, cidr and jsonb read in binary through ADBC come out as exactly the text PostgreSQL prints."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import random

import pytest
from psycopg import sql

from audit_pipeline.sources import pg_values
from audit_pipeline.sources.base import TimeRange
from audit_pipeline.sources.pg_values import ipv6_text
from audit_pipeline.sources.postgres import PostgresSource

pytestmark = pytest.mark.pg

DAY = dt.date(2024, 1, 15)
#: The cases inet_out treats specially: embedded IPv4 (compatible and mapped), zero runs at either end or
#: tied in length, full and empty masks, ::1 and ::2 (not printed as IPv4).
EDGES = [
    "::ffff:1.2.3.4", "::1.2.3.4", "::2", "::1", "::", "1::", "1::1", "0:0:1::", "1:0:0:1:0:0:1:1", "2001:db8::1:0:0:1",
    "::ffff:0.0.0.0", "::ffff:1.2.3.4/100", "fe80::/10", "::/0", "0.0.0.0/0", "255.255.255.255", "10.1.0.0/16", "10.0.0.1/8",
]  # fmt: skip


def _random_values(count: int) -> list[str]:
    rng = random.Random(11)
    values = []
    for _ in range(count):
        if rng.random() < 0.5:
            text = ".".join(str(rng.choice([0, 1, 127, 255, rng.randrange(256)])) for _ in range(4))
            values.append(text + (f"/{rng.randrange(33)}" if rng.random() < 0.3 else ""))
            continue
        words = [rng.choice([0, 0, 0, 1, 0xFFFF, rng.randrange(65536)]) for _ in range(8)]
        if rng.random() < 0.15:
            words[:6] = [0, 0, 0, 0, 0, 0xFFFF]
        text = str(ipaddress.IPv6Address(b"".join(w.to_bytes(2, "big") for w in words)))
        values.append(text + (f"/{rng.randrange(129)}" if rng.random() < 0.3 else ""))
    return values


@pytest.mark.parametrize("system_ntop", [True, False], ids=["platform inet_ntop", "own formatting"])
def test_ip_addresses_read_as_postgresql_prints_them(pg, monkeypatch, system_ntop):
    if system_ntop and not pg_values._SYSTEM_NTOP:
        pytest.skip("this platform's inet_ntop prints IPv6 differently from PostgreSQL, so it is not used")
    monkeypatch.setattr(pg_values, "_SYSTEM_NTOP", system_ntop)
    values = EDGES + _random_values(1_500) + [None] * 20
    pg.insert(
        {"id": f"e{n:05d}", "created_at": dt.datetime(2024, 1, 15, tzinfo=dt.UTC) + dt.timedelta(seconds=n), "ip_address": v} for n, v in enumerate(values)
    )
    with pg.connect() as conn:
        expected = [r[0] for r in conn.execute("SELECT nullif(format('%s', ip_address), '') FROM audit_logs ORDER BY created_at").fetchall()]
    with PostgresSource(pg.readonly_url, batch_rows=300) as source:
        got = [v for batch in source.iter_batches(TimeRange.for_day(DAY)) for v in batch.column(9).to_pylist()]
    assert got == expected
    assert "::ffff:1.2.3.4" in got and "10.1.0.0/16" in got and None in got


def test_cidr_and_char_columns_read_as_postgresql_prints_them(pg):
    # A schema variant: ip_address as cidr (the mask is always printed), country as char(2).
    networks = ["10.0.0.0/8", "192.168.1.0/24", "10.0.0.1/32", "2001:db8::/32", "::1/128", "::ffff:1.2.3.0/120", None]
    with pg.connect() as conn:
        conn.execute("CREATE TABLE audit_logs_cidr (LIKE audit_logs INCLUDING DEFAULTS)")
        conn.execute("ALTER TABLE audit_logs_cidr ALTER COLUMN ip_address TYPE cidr USING ip_address::cidr, ALTER COLUMN country TYPE char(3)")
        conn.execute(sql.SQL("GRANT SELECT ON audit_logs_cidr TO {}").format(sql.Identifier(f"{pg.name}_ro")))
        for n, net in enumerate(networks):
            conn.execute(
                "INSERT INTO audit_logs_cidr (id, type, result, created_at, metadata, ip_address, country) VALUES (%s, 'user.login', 'success', %s, %s, %s, 'DE')",
                (f"c{n}", dt.datetime(2024, 1, 15, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=n), json.dumps({"n": n, "é": [1.50, None]}), net),
            )
        expected = conn.execute(
            "SELECT nullif(format('%s', ip_address), ''), country::text, metadata::text FROM audit_logs_cidr ORDER BY created_at"
        ).fetchall()
    try:
        with PostgresSource(pg.readonly_url, table="audit_logs_cidr") as source:
            rows = [r for batch in source.iter_batches(TimeRange.for_day(DAY)) for r in batch.to_pylist()]
    finally:
        with pg.connect() as conn:
            conn.execute("DROP TABLE audit_logs_cidr")
    assert [(r["ip_address"], r["country"], r["metadata"]) for r in rows] == [tuple(e) for e in expected]
    assert rows[2]["ip_address"] == "10.0.0.1/32" and rows[0]["country"] == "DE"


@pytest.mark.parametrize(
    ("address", "text"),
    [("::ffff:1.2.3.4", "::ffff:1.2.3.4"), ("::1.2.3.4", "::1.2.3.4"), ("::2", "::2"), ("1:0:0:1:0:0:0:1", "1:0:0:1::1"), ("1:0:0:1:0:0:1:1", "1::1:0:0:1:1")],
)
def test_ipv6_text_follows_inet_out(address, text):
    # Without a server: the same rules, on the cases that tell implementations apart.
    assert ipv6_text(ipaddress.IPv6Address(address).packed) == text
