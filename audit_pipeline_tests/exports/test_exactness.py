"""Every value the table can hold comes out exactly, in all three formats."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.exports.day import export_day
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.helpers import read_csv_rows

UTC = dt.UTC
DAY = dt.date(2024, 1, 15)
BIG_METADATA = {"blob": "x" * 3_000_000, "nested": [{"k": i} for i in range(1000)]}

TRICKY = [
    {"id": "n-all-null", "created_at": "2024-01-15 00:00:00+00", "type": "user.login", "result": "success"},
    {
        "id": "quotes",
        "created_at": "2024-01-15 01:00:00+00",
        "actor_email": 'he said "hi", then\nleft\r\nagain',
        "actor_id": "",
        "resource_id": "tab\there",
        "metadata": {"quote": '"', "backslash": "\\", "newline": "a\nb", "ctrl": "\u0001\u001f", "": "empty key"},
    },
    {
        "id": "unicode",
        "created_at": "2024-01-15 02:00:00+00",
        "actor_email": "zoë.ñandú@例え.jp",
        "country": "AR",
        "metadata": {"emoji": "🔐", "rtl": "שלום", "nul_escape": "\\u0000"},
    },
    {"id": "ctrl", "created_at": "2024-01-15 03:00:00+00", "resource_type": "bell\u0007and\u001b", "metadata": {}},
    {
        "id": "numbers",
        "created_at": "2024-01-15 04:00:00+00",
        "metadata": {"big": 123456789012345678901234567890, "i64": 9223372036854775807, "neg": -1, "dec": 1.50, "exp": 1e-7, "arr": [1, [2, [3]], {"a": None}]},
    },
    {"id": "ipv4", "created_at": "2024-01-15 05:00:00+00", "ip_address": "203.0.113.7"},
    {"id": "ipv6", "created_at": "2024-01-15 06:00:00+00", "ip_address": "2001:db8::1"},
    {"id": "netmask", "created_at": "2024-01-15 07:00:00+00", "ip_address": "10.1.0.0/16"},
    {
        "id": "formula=",
        "created_at": "2024-01-15 08:00:00+00",
        "actor_email": '=HYPERLINK("http://evil")',
        "tenant_id": "+1",
        "organization_id": "-2",
        "resource_id": "@SUM(A1)",
    },
    {"id": "big-meta", "created_at": "2024-01-15 09:00:00+00", "metadata": BIG_METADATA},
    {"id": "array-meta", "created_at": "2024-01-15 10:00:00+00", "metadata": [1, "two", {"three": 3}]},
    # Other offsets land on their UTC day.
    {"id": "offset-in", "created_at": "2024-01-16 03:30:00+05", "metadata": {}},  # 2024-01-15T22:30Z
    {"id": "offset-out", "created_at": "2024-01-15 01:00:00+02", "metadata": {}},  # 2024-01-14T23:00Z
    {"id": "last-micro", "created_at": "2024-01-15 23:59:59.999999+00"},
    {"id": "next-day", "created_at": "2024-01-16 00:00:00+00"},
]


@pytest.fixture
def exported(pg, tmp_path: Path):
    pg.insert(TRICKY)
    # A raw jsonb literal the driver cannot re-spell: numbers exactly as written.
    with pg.connect() as conn:
        conn.execute(
            """INSERT INTO audit_logs (id, type, result, created_at, metadata) VALUES ('raw-json', 'x', 'success', '2024-01-15 11:00:00+00', '{"n": 1.000, "e": 1E+2, "dup": 1, "dup": 2}')"""
        )
    store = ObjectStore(str(tmp_path / "exports"))
    with PostgresSource(pg.readonly_url, batch_rows=1_000) as source:
        result = export_day(source, store, DAY, ExportSettings())
    return pg, store, result


def _source_rows(pg) -> list[dict]:
    query = (
        "SELECT id, type, actor_id, actor_email, actor_type, resource_id, resource_type, tenant_id, organization_id,"
        " CASE WHEN ip_address IS NULL THEN NULL ELSE format('%s', ip_address) END, country, result,"
        " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), metadata::text"
        " FROM audit_logs WHERE created_at >= '2024-01-15T00:00:00Z' AND created_at < '2024-01-16T00:00:00Z'"
        ' ORDER BY created_at, id COLLATE "C"'
    )
    return [dict(zip(COLUMNS, row, strict=True)) for row in pg.fetch(query)]


def _unprotect(value: str) -> str:
    return value[1:] if value[:2] in ("'=", "'+", "'-", "'@", "'\t", "'\r") else value


def test_ndjson_holds_every_value_exactly(exported):
    pg, store, result = exported
    expected = _source_rows(pg)
    data = store.read_bytes("ndjson/date=2024-01-15/audit_logs.ndjson")
    lines = data.decode("utf-8").split("\n")
    assert lines[-1] == ""
    assert len(lines) - 1 == len(expected) == result.rows
    for line, row in zip(lines, expected, strict=False):
        obj = json.loads(line, parse_float=Decimal)
        assert list(obj) == list(COLUMNS)
        for column in COLUMNS:
            if column == "metadata":
                assert obj[column] == json.loads(row[column], parse_float=Decimal)
                assert line.endswith(',"metadata":' + row[column] + "}")  # nested, jsonb text as-is, every digit kept
            else:
                assert obj[column] == row[column], (row["id"], column)
    assert "zoë.ñandú@例え.jp" in data.decode()
    assert '"big": 123456789012345678901234567890' in data.decode()
    assert '{"e": 100, "n": 1.000, "dup": 2}' in data.decode()


def test_csv_holds_every_value_exactly(exported):
    pg, store, _ = exported
    expected = _source_rows(pg)
    raw = store.read_bytes("csv/date=2024-01-15/audit_logs.csv")
    assert raw.startswith((",".join(COLUMNS) + "\r\n").encode())
    rows = read_csv_rows(raw)
    assert len(rows) == len(expected)
    for got, row in zip(rows, expected, strict=True):
        for column in COLUMNS:
            want = row[column]
            value = _unprotect(got[column])
            assert value == ("" if want is None else want), (row["id"], column)
    # NULL is an empty field, an empty string is "" (quoted), so the two stay distinguishable.
    quotes_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"quotes,"))
    assert quotes_line.startswith(b'quotes,user.login,"",')
    null_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"n-all-null,"))
    assert null_line.startswith(b"n-all-null,user.login,,,,,,,,,,success,")


def test_csv_neutralises_formulas_and_can_be_told_not_to(exported, tmp_path):
    pg, store, _ = exported
    raw = store.read_bytes("csv/date=2024-01-15/audit_logs.csv")
    line = next(line for line in raw.split(b"\r\n") if line.startswith(b"formula="))
    assert b'"\'=HYPERLINK(""http://evil"")"' in line
    assert b'"\'+1","\'-2"' in line and b'"\'@SUM(A1)"' in line
    ndjson = store.read_bytes("ndjson/date=2024-01-15/audit_logs.ndjson")
    assert b'"actor_email":"=HYPERLINK(\\"http://evil\\")"' in ndjson  # only CSV neutralises

    plain = ObjectStore(str(tmp_path / "plain"))
    with PostgresSource(pg.readonly_url) as source:
        export_day(source, plain, DAY, ExportSettings(csv_formula_protection=False))
    raw_plain = plain.read_bytes("csv/date=2024-01-15/audit_logs.csv")
    line = next(line for line in raw_plain.split(b"\r\n") if line.startswith(b"formula="))
    assert b'"=HYPERLINK(""http://evil"")",' in line and b",+1,-2," in line


def test_parquet_is_typed_sorted_and_exact(exported):
    pg, store, _ = exported
    expected = _source_rows(pg)
    with store.open("parquet/date=2024-01-15/audit_logs.parquet") as handle:
        parquet = pq.ParquetFile(handle)
        table = parquet.read()
        meta = parquet.metadata
    assert str(table.schema.field("created_at").type) == "timestamp[us, tz=UTC]"
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert meta.row_group(0).column(12).statistics is not None  # created_at: readers prune on it
    assert meta.row_group(0).column(0).statistics is not None  # id
    assert not meta.row_group(0).column(13).is_stats_set  # metadata: JSON text, no min/max
    got = table.to_pylist()
    assert [r["id"] for r in got] == [r["id"] for r in expected]
    for g, row in zip(got, expected, strict=True):
        assert g["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ") == row["created_at"]
        for column in COLUMNS:
            if column != "created_at":
                assert g[column] == row[column], (row["id"], column)


def test_day_boundaries_are_utc(exported):
    _, store, result = exported
    ids = [json.loads(line)["id"] for line in store.read_bytes("ndjson/date=2024-01-15/audit_logs.ndjson").splitlines()]
    assert ids[0] == "n-all-null" and ids[-1] == "last-micro"
    assert "offset-in" in ids and "offset-out" not in ids and "next-day" not in ids
    assert result.min_created_at == dt.datetime(2024, 1, 15, tzinfo=UTC)
    assert result.max_created_at == dt.datetime(2024, 1, 15, 23, 59, 59, 999999, tzinfo=UTC)
