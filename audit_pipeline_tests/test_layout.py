"""Every key the pipeline writes parses back to what made it; keys that are not ours parse to None."""

from __future__ import annotations

import datetime as dt

import pytest

from audit_pipeline.core import layout
from audit_pipeline.core.retry_after import parse_retry_after

DAY = dt.date(2024, 1, 15)


@pytest.mark.parametrize("fmt,gzip,name", [("csv", False, "audit_logs.csv"), ("ndjson", True, "audit_logs.ndjson.gz"), ("parquet", True, "audit_logs.parquet")])
def test_data_keys_round_trip(fmt, gzip, name):
    key = layout.object_key(fmt, DAY, layout.data_name(fmt, gzip=gzip))
    assert key == f"{fmt}/date=2024-01-15/{name}"
    assert layout.parse_data_key(key) == (fmt, DAY, name)


@pytest.mark.parametrize(
    "key",
    [
        "csv/date=2024-02-30/audit_logs.csv",  # not a calendar day: somebody else's object
        "csv/README.txt",
        "csv/date=2024-03-01/notes/keep.txt",
        "json/date=2024-03-01/audit_logs.json",
        "deadletters/elasticsearch/date=2024-03-01/x.ndjson",
    ],
)
def test_keys_that_are_not_daily_data_objects(key):
    assert layout.parse_data_key(key) is None


def test_integrity_and_retention_keys_round_trip():
    assert layout.day_of_manifest_key(layout.manifest_key(DAY)) == DAY
    assert layout.day_of_retirement_key(layout.retirement_key(DAY)) == DAY
    assert layout.day_of_retention_record_key(layout.retention_record_key(DAY)) == DAY
    assert layout.day_of_manifest_key(layout.retirement_key(DAY)) is None  # a retirement record is not a manifest
    assert layout.day_of_manifest_key("manifests/date=2023-02-29.json") is None
    assert layout.manifest_key(DAY) == "manifests/date=2024-01-15.json"
    assert layout.retirement_key(DAY) == "manifests/retired/date=2024-01-15.json"


@pytest.mark.parametrize("truncated", [False, True])
def test_dead_letter_keys_round_trip(truncated):
    first = dt.datetime(2024, 1, 15, 23, 59, 59, 999_999, tzinfo=dt.UTC)
    key = layout.dead_letter_key("webhook:SIEM Audit", first, "0123456789abcdef", truncated=truncated)
    parsed = layout.parse_dead_letter_key(key)
    assert parsed == ("webhook_SIEM_Audit", DAY, 1_705_363_199_999_999, "0123456789abcdef", truncated)
    assert key.startswith(layout.dead_letter_prefix("webhook:SIEM Audit"))


@pytest.mark.parametrize(
    "value,seconds",
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("Mon, 15 Jan 2024 00:01:00 GMT", 60.0),
        ("Sun, 14 Jan 2024 00:00:00 GMT", 0.0),
        (None, None),
        ("soon", None),
        ("-3", None),
        ("nan", None),
    ],
)
def test_retry_after_as_seconds_or_an_http_date(value, seconds):
    assert parse_retry_after(value, now=dt.datetime(2024, 1, 15, tzinfo=dt.UTC)) == seconds


def test_the_day_folder_of_any_object_under_it():
    assert layout.day_in_data_key("csv/date=2024-01-15/audit_logs.csv") == DAY
    assert layout.day_in_data_key("csv/date=2024-01-15/notes/keep.txt") == DAY  # nested: still that day's folder
    assert layout.day_in_data_key("csv/date=2024-02-30/audit_logs.csv") is None
    assert layout.day_in_data_key("csv/README.txt") is None
