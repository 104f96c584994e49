"""Exports to S3 through moto's server over HTTP with s3fs: layout, content types, encryption, errors."""

from __future__ import annotations

import datetime as dt

import pyarrow.dataset as pads
import pytest

from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.core.errors import StorageError
from audit_pipeline.exports.day import export_day
from audit_pipeline.exports.readback import READERS
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage.object_store import ObjectStore

DAY = dt.date(2024, 1, 15)


def test_export_to_s3(pg, s3_server):
    pg.insert(generate_events(DAY, 1_500))
    pg.insert(generate_events(DAY + dt.timedelta(days=1), 700))
    bucket = s3_server.new_bucket()
    store = ObjectStore(f"s3://{bucket}/audit/prod", endpoint_url=s3_server.endpoint_url)
    with PostgresSource(pg.readonly_url, batch_rows=1_000) as source:
        export_day(source, store, DAY, ExportSettings(gzip=True))
        result = export_day(source, store, DAY + dt.timedelta(days=1), ExportSettings(gzip=True))
    keys = sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [
        "audit/prod/csv/date=2024-01-15/audit_logs.csv.gz",
        "audit/prod/csv/date=2024-01-16/audit_logs.csv.gz",
        "audit/prod/ndjson/date=2024-01-15/audit_logs.ndjson.gz",
        "audit/prod/ndjson/date=2024-01-16/audit_logs.ndjson.gz",
        "audit/prod/parquet/date=2024-01-15/audit_logs.parquet",
        "audit/prod/parquet/date=2024-01-16/audit_logs.parquet",
    ]
    client = s3_server.client()
    heads = {key: client.head_object(Bucket=bucket, Key=key) for key in keys}
    assert {h["ServerSideEncryption"] for h in heads.values()} == {"AES256"}
    assert heads["audit/prod/csv/date=2024-01-15/audit_logs.csv.gz"]["ContentType"] == "text/csv; charset=utf-8"
    assert heads["audit/prod/csv/date=2024-01-15/audit_logs.csv.gz"]["ContentEncoding"] == "gzip"
    assert heads["audit/prod/ndjson/date=2024-01-15/audit_logs.ndjson.gz"]["ContentType"] == "application/x-ndjson"
    assert heads["audit/prod/parquet/date=2024-01-15/audit_logs.parquet"]["ContentType"] == "application/vnd.apache.parquet"
    assert result.objects[2].uri == f"s3://{bucket}/audit/prod/parquet/date=2024-01-16/audit_logs.parquet"
    for fmt in ("csv", "ndjson", "parquet"):
        (key,) = store.list(f"{fmt}/date=2024-01-15")
        assert READERS[fmt](store, key).rows == 1_500
    # Analysts: the hive-partitioned dataset reads through s3fs and prunes on date.
    dataset = pads.dataset(f"{bucket}/audit/prod/parquet", filesystem=store.fs, format="parquet", partitioning="hive")
    table = dataset.to_table(filter=pads.field("date") == "2024-01-16")
    assert table.num_rows == 700
    assert len(list(dataset.get_fragments(filter=pads.field("date") == "2024-01-16"))) == 1


def test_kms_encryption_is_requested(pg, s3_server):
    pg.insert(generate_events(DAY, 10))
    bucket = s3_server.new_bucket()
    store = ObjectStore(f"s3://{bucket}", endpoint_url=s3_server.endpoint_url, sse="aws:kms", kms_key_id="alias/audit")
    with PostgresSource(pg.readonly_url) as source:
        export_day(source, store, DAY, ExportSettings())
    head = s3_server.client().head_object(Bucket=bucket, Key="csv/date=2024-01-15/audit_logs.csv")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert "alias/audit" in head.get("SSEKMSKeyId", "alias/audit")


def test_missing_bucket_is_a_clear_error_and_source_untouched(pg, s3_server):
    store = ObjectStore("s3://no-such-bucket-here/x", endpoint_url=s3_server.endpoint_url)
    with PostgresSource(pg.readonly_url) as source, pytest.raises(StorageError, match=r"bucket 'no-such-bucket-here' does not exist.*AUDIT_EXPORT_URL"):
        export_day(source, store, DAY, ExportSettings())
