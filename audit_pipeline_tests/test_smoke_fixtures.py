import datetime as dt

from audit_pipeline.sources.base import TimeRange
from audit_pipeline.sources.postgres import PostgresSource


def test_readonly_role_can_count(pg):
    pg.insert([{"id": "a", "created_at": dt.datetime(2024, 1, 15, tzinfo=dt.UTC)}])
    with PostgresSource(pg.readonly_url) as source:
        source.check()
        assert source.count(TimeRange.for_day(dt.date(2024, 1, 15))) == 1


def test_moto_bucket(s3_server):
    bucket = s3_server.new_bucket()
    assert bucket in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
