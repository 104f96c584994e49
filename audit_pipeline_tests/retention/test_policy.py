"""The retention: section: durations, presets, the boundary day, and bad policies as clear errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from audit_pipeline.config.sections.retention import parse_retention
from audit_pipeline.config.settings import Settings, load_settings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.retention.elasticsearch import IndexPattern
from audit_pipeline.retention.policy import retention_policy

TODAY = dt.date(2024, 5, 20)


def _policy(retention: dict, tmp_path: Path, **sections):
    path = tmp_path / "audit_pipeline.yaml"
    path.write_text(yaml.safe_dump({"retention": retention, **sections}))
    return retention_policy(load_settings(path, env={"RETENTION_DB": "postgresql://cleaner:s3cret@db/audit"}))


def test_durations_and_the_boundary_day() -> None:
    seven = parse_retention("7d")
    # 7d on 2024-05-20: 2024-05-13 is the oldest day kept (the boundary), 2024-05-12 is due.
    assert seven.cutoff(TODAY) == dt.date(2024, 5, 13)
    assert parse_retention("2w").cutoff(TODAY) == dt.date(2024, 5, 6)
    assert parse_retention("7y").cutoff(TODAY) == dt.date(2017, 5, 20)
    # Calendar years from a leap day end on 28 February.
    assert parse_retention("1y").cutoff(dt.date(2024, 2, 29)) == dt.date(2023, 2, 28)
    assert parse_retention("unlimited").cutoff(TODAY) is None
    assert parse_retention(" UNLIMITED ").unlimited


def test_longer_and_shorter_periods_compare_on_every_run_date() -> None:
    assert parse_retention("366d").keeps_at_least(parse_retention("1y"))
    assert not parse_retention("365d").keeps_at_least(parse_retention("1y"))  # a leap year is 366 days
    assert parse_retention("1y").keeps_at_least(parse_retention("365d"))
    assert parse_retention("unlimited").keeps_at_least(parse_retention("7y"))
    assert not parse_retention("7y").keeps_at_least(parse_retention("unlimited"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7 yrs", "'7 yrs' is not a duration"),
        ("-7d", "'-7d' is negative"),
        ("0d", "the shortest retention is 1d"),
        (7, "7 has no unit: write 7d for days or 7y for years"),
        ("7D", "is not a duration"),
        ("1.5y", "is not a duration"),
    ],
)
def test_malformed_durations_name_the_key(tmp_path: Path, value, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _policy({"elasticsearch": value}, tmp_path)
    assert "retention.elasticsearch" in str(caught.value)
    assert expected in str(caught.value)


def test_presets_and_shorthands(tmp_path: Path) -> None:
    assert {f: str(d) for f, d in _policy({"exports": {"plan": "pro"}}, tmp_path).exports.items()} == {"csv": "90d", "ndjson": "90d", "parquet": "90d"}
    mixed = _policy({"exports": {"plan": "free", "parquet": "unlimited"}}, tmp_path)
    assert {f: str(d) for f, d in mixed.exports.items()} == {"csv": "7d", "ndjson": "7d", "parquet": "unlimited"}
    assert str(_policy({"exports": "enterprise"}, tmp_path).exports["csv"]) == "365d"
    assert str(_policy({"plan": "unlimited"}, tmp_path).exports["ndjson"]) == "unlimited"
    assert {str(d) for d in _policy({"exports": "30d"}, tmp_path).exports.values()} == {"30d"}
    empty = _policy({}, tmp_path)
    assert not empty.deletes_anything and not empty.legal_hold


@pytest.mark.parametrize(
    ("retention", "expected"),
    [
        ({"exports": {"plan": "gold"}}, "retention.exports.plan"),
        ({"exports": {"xlsx": "7d"}}, "retention.exports.xlsx: unknown key"),
        ({"keep": "7d"}, "retention.keep: unknown key"),
        ({"plan": "pro", "exports": {"plan": "free"}}, "give the plan once"),
        ({"legal_hold": "maybe"}, "retention.legal_hold"),
        ({"batch_rows": 5}, "retention.batch_rows"),
    ],
)
def test_bad_sections_name_the_key(tmp_path: Path, retention: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        _policy(retention, tmp_path)


def test_database_retention_needs_a_connection_that_may_delete(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"set retention.database_url .* SELECT and DELETE"):
        _policy({"database": "7y"}, tmp_path)
    policy = _policy({"database": "7y", "database_url": "${RETENTION_DB}"}, tmp_path)
    assert str(policy.database) == "7y"
    assert "s3cret" not in repr(policy)  # the URL is a secret


def test_exports_deleted_before_the_rows_are_a_contradiction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _policy({"database": "1y", "database_url": "${RETENTION_DB}", "exports": {"plan": "enterprise"}}, tmp_path)
    message = str(caught.value)
    assert "retention.exports (csv 365d, ndjson 365d, parquet 365d) deletes every export format before retention.database (1y)" in message
    assert "rows could never be deleted safely" in message
    # One format kept at least as long as the rows is enough.
    _policy({"database": "1y", "database_url": "${RETENTION_DB}", "exports": {"plan": "enterprise", "parquet": "366d"}}, tmp_path)


def test_database_retention_refuses_filtered_exports(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"retention\.database cannot be used with export\.filter"):
        _policy({"database": "7y", "database_url": "${RETENTION_DB}"}, tmp_path, export={"filter": {"exclude_types": ["token.*"]}})


def test_index_retention_needs_the_sink_and_a_daily_pattern(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no sinks\.elasticsearch section"):
        _policy({"elasticsearch": "30d"}, tmp_path)
    with pytest.raises(ConfigError, match=r"sinks.elasticsearch.index 'audit-%Y.%m' does not name one index per day"):
        IndexPattern.compile("audit-%Y.%m")
    with pytest.raises(ConfigError, match="uses %H"):
        IndexPattern.compile("audit-%Y.%m.%d-%H")


def test_index_names_are_matched_exactly() -> None:
    pattern = IndexPattern.compile("hellojohn-audit-%Y.%m.%d")
    assert pattern.day_of("hellojohn-audit-2024.05.01") == dt.date(2024, 5, 1)
    for foreign in ("hellojohn-audit-2024.05.01-restored", "hellojohn-audit-2024.5.01", "hellojohn-audit-2024.02.30", "xhellojohn-audit-2024.05.01"):
        assert pattern.day_of(foreign) is None, foreign
    assert IndexPattern.compile("audit-%y%j").day_of("audit-24032") == dt.date(2024, 2, 1)


def test_settings_defaults_keep_everything() -> None:
    assert not retention_policy(Settings()).deletes_anything


def test_a_monthly_index_pattern_is_refused_when_the_policy_is_read(tmp_path: Path) -> None:
    sinks = {"elasticsearch": {"url": "http://127.0.0.1:9200", "index": "audit-%Y.%m"}}
    with pytest.raises(ConfigError, match=r"sinks.elasticsearch.index 'audit-%Y.%m' does not name one index per day"):
        _policy({"elasticsearch": "30d"}, tmp_path, sinks=sinks)
