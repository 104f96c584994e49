"""HelloJohn → OCSF: every event of a realistic day validates against the compiled OCSF 1.1.0 and 1.8.0
schemas (with a validator written from the schema's structure, not from our mapping), and every
documented event type lands in the class and activity this table expects."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from audit_pipeline.config.sections.ocsf import OcsfSettings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.schemas.ocsf import OcsfMapper
from audit_pipeline.schemas.ocsf_table import DEFAULT_TABLE
from audit_pipeline.sources.synthetic import EVENT_TYPES
from audit_pipeline_tests.schemas.conftest import DATA, VERSIONS, as_batch, can_compile, edge_events
from audit_pipeline_tests.schemas.ocsf_validator import OcsfValidator

#: Written from the issue and the OCSF class definitions, independently of audit_pipeline.schemas.ocsf_table.
EXPECTED: dict[str, tuple[int, int]] = {
    "user.login": (3002, 1),
    "user.login_failed": (3002, 1),
    "user.passkey_login": (3002, 1),
    "user.mfa_challenge": (3002, 1),
    "user.mfa_verified": (3002, 1),
    "user.mfa_failed": (3002, 1),
    "user.logout": (3002, 2),
    "token.issued": (3002, 3),
    "token.refreshed": (3002, 3),
    "token.exchanged": (3002, 3),
    "user.signup": (3001, 1),
    "user.created": (3001, 1),
    "user.enabled": (3001, 2),
    "user.password_changed": (3001, 3),
    "user.password_reset": (3001, 4),
    "user.disabled": (3001, 5),
    "user.deleted": (3001, 6),
    "user.locked": (3001, 9),
    "user.mfa_enrolled": (3001, 10),
    "user.mfa_removed": (3001, 11),
    "role.assigned": (3005, 1),
    "role.revoked": (3005, 2),
    "org.member_added": (3006, 3),
    "org.member_removed": (3006, 4),
    "org.created": (3006, 6),
    "org.deleted": (3006, 5),
    "session.revoked": (3004, 4),
    "api_key.created": (3004, 1),
    "api_key.revoked": (3004, 4),
    "tenant.settings_updated": (3004, 3),
    # not in the table: the verb decides, then 3004/99 Other
    "client.created": (3004, 1),
    "connection.updated": (3004, 3),
    "connection.deleted": (3004, 4),
    "widget.frobnicated": (3004, 99),
}


def _mapped(version: str, rows: Any = None, settings: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    batch = rows
    mapper = OcsfMapper(OcsfSettings.model_validate({"version": version, **(settings or {})}))
    return [json.loads(line) for line in mapper.encode_batch(batch.batch, list(batch.lines()))]  # json: big integers stay exact


@pytest.mark.parametrize("event_type", sorted(EXPECTED))
def test_every_documented_type_has_its_class_and_activity(event_type: str) -> None:
    mapper = OcsfMapper()
    row = mapper.row(event_type)
    assert (row.class_uid, row.activity_id) == EXPECTED[event_type]


def test_the_table_covers_every_type_the_synthetic_source_and_the_demo_produce() -> None:
    assert {t for t, _, _ in EVENT_TYPES} <= set(DEFAULT_TABLE)
    assert set(DEFAULT_TABLE) <= set(EXPECTED)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_table_row_is_a_class_and_activity_of_the_compiled_schema(version: str, ocsf_schemas: dict[str, Any]) -> None:
    classes = {int(c["uid"]): c for c in ocsf_schemas[version]["classes"].values()}
    for event_type, row in DEFAULT_TABLE.items():
        assert row.class_uid in classes, event_type
        assert str(row.activity_id) in classes[row.class_uid]["attributes"]["activity_id"]["enum"], (version, event_type)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_realistic_day_validates_against_the_compiled_schema(version: str, ocsf_schemas: dict[str, Any], realistic_day: Any) -> None:
    validator = OcsfValidator(ocsf_schemas[version])
    events = _mapped(version, realistic_day)
    assert len(events) == len(realistic_day)
    problems = {}
    for event in events:
        found = validator.problems(event)
        if found:
            problems[event["metadata"]["uid"]] = found
    assert not problems, json.dumps(dict(list(problems.items())[:5]), indent=1)
    assert {e["metadata"]["version"] for e in events} == {version}
    # every class the table uses occurs in the day, so each was validated
    assert {e["class_uid"] for e in events} == {3001, 3002, 3004, 3005, 3006}


def test_the_validator_catches_what_the_schema_forbids(ocsf_schemas: dict[str, Any], realistic_day: Any) -> None:
    """The validator itself is tested: each broken copy of a valid event is refused for that reason."""
    validator = OcsfValidator(ocsf_schemas["1.1.0"])
    good = next(e for e in _mapped("1.1.0", realistic_day) if e["class_uid"] == 3002 and "actor" in e and "src_endpoint" in e)
    assert validator.problems(good) == []

    def broken(change: Any) -> list[str]:
        event = json.loads(json.dumps(good))
        change(event)
        return validator.problems(event)

    assert any("user: required" in p for p in broken(lambda e: e.pop("user")))
    assert any("not one of" in p for p in broken(lambda e: e.update(status_id=7)))
    assert any("type_uid" in p for p in broken(lambda e: e.update(type_uid=300299)))
    assert any("not an attribute" in p for p in broken(lambda e: e.update(tenant="x")))
    assert any("profile 'host'" in p for p in broken(lambda e: e["metadata"].pop("profiles")))
    assert any("is not a long_t" in p or "timestamp_t" in p for p in broken(lambda e: e.update(time="2024-01-15")))
    assert any("pattern" in p for p in broken(lambda e: e["src_endpoint"].update(ip="203.0.113.0/24")))
    assert any("caption" in p for p in broken(lambda e: e.update(status="Success", status_id=2)))
    assert any("at least one of" in p for p in broken(lambda e: e.pop("service")))


def test_the_fields_the_issue_names(realistic_day: Any) -> None:
    events = {e["metadata"]["uid"]: e for e in _mapped("1.1.0", realistic_day)}
    rows = {r["id"]: r for r in realistic_day.batch.to_pylist()}
    for uid, event in events.items():
        row = rows[uid]
        assert event["type_uid"] == event["class_uid"] * 100 + event["activity_id"]
        assert event["status_id"] == {"success": 1, "failure": 2}.get(row["result"], 99)
        micros = (row["created_at"] - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
        assert event["time"] == micros // 1000
        assert event["metadata"]["original_time"] == row["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert event["metadata"].get("tenant_uid") == row["tenant_id"]
        assert event["metadata"]["product"] == {"name": "HelloJohn", "vendor_name": "HelloJohn"}
        assert event["unmapped"]["id"] == uid and event["unmapped"]["type"] == row["type"]
    v6 = events["alog_edge_v6"]
    assert v6["src_endpoint"] == {"ip": "2001:db8::1", "location": {"country": "DE"}}
    assert v6["status_detail"] == "invalid_password" and v6["severity_id"] == 2
    assert "src_endpoint" not in events["alog_edge_mask"] and events["alog_edge_mask"]["unmapped"]["ip_address"] == "203.0.113.0/24"
    assert events["alog_edge_mfa"]["severity_id"] == 3 and events["alog_edge_mfa"]["user"] == {"uid": "usr_3"}
    assert events["alog_edge_mfa"]["actor"]["user"] == {"uid": "adm_2", "type_id": 2, "type": "Admin"}
    assert events["alog_edge_target"]["user"] == {"uid": "usr_77"} and events["alog_edge_target"]["group"]["uid"] == "org_1"
    assert events["alog_edge_bigint"]["privileges"] == ["admin"]
    assert events["alog_edge_bigint"]["unmapped"]["metadata"]["n"] == 123456789012345678901234567890
    assert events["alog_edge_result"]["status"] == "error"
    assert events["alog_edge_passkey"]["is_mfa"] is True
    login = next(e for e in events.values() if e["unmapped"]["type"] == "user.login" and e["unmapped"]["actor_type"] == "user")
    assert login["severity_id"] == 1 and login["user"]["uid"] == login["unmapped"]["actor_id"]


def test_deployment_event_types_map_without_code(ocsf_schemas: dict[str, Any]) -> None:
    rows = [dict(edge_events()[0], id="alog_custom", type="passkey.registered", resource_type="user", resource_id="usr_5")]
    settings = {"event_types": {"passkey.*": {"class_uid": 3001, "activity_id": 10, "severity_id": 2}}}
    for version in VERSIONS:
        (event,) = _mapped(version, as_batch(rows), settings)
        assert (event["class_uid"], event["activity_id"], event["type_uid"], event["severity_id"]) == (3001, 10, 300110, 2)
        assert OcsfValidator(ocsf_schemas[version]).problems(event) == []


def test_an_activity_the_version_lacks_is_refused_naming_the_setting() -> None:
    settings = OcsfSettings(version="1.1.0", event_types={"user.switched": {"class_uid": 3002, "activity_id": 7}})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"sinks.splunk.ocsf.event_types.user.switched.activity_id: 7 is not an activity of class 3002 in OCSF 1.1.0"):
        OcsfMapper(settings, "sinks.splunk.ocsf")
    OcsfMapper(OcsfSettings(version="1.8.0", event_types=settings.event_types))  # Account Switch exists in 1.8.0


@pytest.mark.skipif(not all(can_compile(v) for v in VERSIONS), reason="needs ocsf-lib and ../shared/reference (a developer machine)")
def test_the_committed_schema_data_is_the_documented_compile(tmp_path: Path) -> None:
    from audit_pipeline_tests.schemas.conftest import compile_schema

    for version in VERSIONS:
        assert compile_schema(version, tmp_path) == json.loads((DATA / f"ocsf-{version}.json").read_text()), version


def test_the_docs_print_the_table_as_it_is() -> None:
    from audit_pipeline.schemas.ocsf_table import ACTIVITIES, CLASS_NAMES

    page = (Path(__file__).resolve().parents[2] / "docs" / "schemas" / "ocsf.md").read_text(encoding="utf-8")
    for event_type, row in DEFAULT_TABLE.items():
        cells = f"| `{event_type}` | {row.class_uid} {CLASS_NAMES[row.class_uid]} | {row.activity_id} {ACTIVITIES['1.1.0'][row.class_uid][row.activity_id]} |"
        assert cells in page, event_type
