"""A day exported through the HelloJohn API is the same files as the day exported from PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.exports.day import export_day
from audit_pipeline.sources.hellojohn_api import HelloJohnApiSource
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.sources.test_hellojohn_api import EDGE_EVENTS
from audit_pipeline_tests.standins.hellojohn_api import DEFAULT_KEY, serve_hellojohn_api

DAY = dt.date(2024, 1, 15)


#: A server capping each export response at 400 events, whose first resumed response is cut mid-line.
CAPPED_AND_CUT = {"export_row_cap": 400, "export_cut_after": {6: 250}}


@pytest.mark.parametrize(
    ("api_read", "gzip", "faults"),
    [("export", False, {}), ("export", True, {}), ("export", True, CAPPED_AND_CUT), ("list", False, {}), ("list", True, {})],
)
def test_day_through_the_api_is_byte_identical_to_the_day_from_postgres(pg, tmp_path: Path, api_read: str, gzip: bool, faults: dict):
    pg.insert(generate_events(DAY, 1_500))
    pg.insert(EDGE_EVENTS)
    # Spellings the API may use for the same jsonb value: exponent, key order, escapes, duplicates.
    with pg.connect() as conn:
        conn.execute(
            "INSERT INTO audit_logs (id, type, result, created_at, metadata) VALUES"
            """ ('spelled', 'user.login', 'success', '2024-01-15 16:00:00+00', '{"n": 1.000, "e": 1E+2, "dup": 1, "dup": 2, "u": "\\u00e9"}')"""
        )
    options = ExportSettings(gzip=gzip, parquet_row_group_rows=1_000)
    from_pg = ObjectStore(str(tmp_path / "pg"))
    from_api = ObjectStore(str(tmp_path / "api"))
    with PostgresSource(pg.readonly_url, batch_rows=1_000) as source:
        pg_export = export_day(source, from_pg, DAY, options)
    with serve_hellojohn_api(pg.url, rate_limit_every=5, fail_at={3}, retry_after=0, **faults) as api:
        api_source = HelloJohnApiSource(api.base_url, DEFAULT_KEY, api_read=api_read, export_row_cap=400 if faults else 100_000, sleep=lambda s: None)
        api_export = export_day(api_source, from_api, DAY, options)
    if faults:  # capped responses of 400 events, a 500 on a list request settling an instant, a response cut mid-line after 250 events, 429s
        requests = [(r.path.rsplit("/", 1)[-1], r.status, r.rows) for r in api.requests]
        assert requests[:7] == [
            ("export", 200, 0),  # the source check's probe
            ("export", 200, 400),
            ("audit-logs", 500, 0),
            ("audit-logs", 200, 0),  # the instant where the capped response stopped, settled
            ("export", 429, 0),
            ("export", 200, 250),  # cut mid-line: resumed after the instant it reached is settled
            ("audit-logs", 200, 0),
        ]
        answered = [rows for path, status, rows in requests if path == "export" and status == 200]
        assert answered[:5] == [0, 400, 250, 400, 400] and 0 < answered[5] < 400 and len(answered) == 6
    elif api_read == "export":  # the day in one request (besides the source check's probe of the last minute)
        day_reads = [(r.path, r.status) for r in api.requests if r.params.get("from") == "2024-01-15T00:00:00Z"]
        assert day_reads == [("/v1/audit-logs/export", 200)]
    assert api_export.rows == pg_export.rows == 1_500 + 10
    assert [(o.key, o.bytes, o.sha256) for o in api_export.objects] == [(o.key, o.bytes, o.sha256) for o in pg_export.objects]
    for obj in pg_export.objects:
        assert from_api.read_bytes(obj.key) == from_pg.read_bytes(obj.key), obj.key
    parquet = next(o.key for o in api_export.objects if o.format == "parquet")
    table = pq.read_table(Path(from_api.root) / parquet)
    row = next(r for r in table.to_pylist() if r["id"] == "spelled")
    assert row["metadata"] == '{"e": 100, "n": 1.000, "u": "é", "dup": 2}'  # jsonb's own text, via either source
