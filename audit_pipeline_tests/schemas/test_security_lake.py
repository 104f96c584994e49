"""OCSF exports for Amazon Security Lake: a day's Parquet export (from PostgreSQL) → one OCSF Parquet object per
class in Security Lake's custom-source layout, on moto's S3 server over HTTP.

Every row read back from the published objects validates against the compiled OCSF schema (the validator
knows nothing of our mapping), the Parquet columns are the OCSF attributes with OCSF's types (objects as
structs, arrays as lists), the rows add up to the export's, and a re-run of the day is byte-identical."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit_pipeline.config.sections.ocsf import OcsfSettings
from audit_pipeline.config.sections.security_lake import SecurityLakeSettings
from audit_pipeline.config.settings import ExportSettings, load_settings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.exports.day import export_day
from audit_pipeline.integrity.ed25519 import Ed25519Signer
from audit_pipeline.integrity.signing import HmacSigner
from audit_pipeline.schemas.ocsf import OcsfMapper
from audit_pipeline.schemas.ocsf_table import CLASS_NAMES
from audit_pipeline.security_lake.checks import check_lake_day
from audit_pipeline.security_lake.columns import class_schema
from audit_pipeline.security_lake.export import LakeManifest, export_lake_day, lake_manifest_key
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.schemas.conftest import DAY, VERSIONS, as_batch, day_rows, edge_events
from audit_pipeline_tests.schemas.ocsf_validator import OcsfValidator

ACCOUNT = "123456789012"
REGION = "eu-west-1"
NAMES = {3001: "hj-account", 3002: "hj-auth", 3004: "hj-entity", 3005: "hj-access", 3006: "hj-group"}


def _settings(url: str, version: str = "1.1.0", **extra: Any) -> SecurityLakeSettings:
    return SecurityLakeSettings.model_validate(
        {"enabled": True, "url": url, "region": REGION, "account_id": ACCOUNT, "ocsf": {"version": version}, "source_names": NAMES, **extra}
    )


def _without_nulls(value: Any) -> Any:
    """A row as OCSF JSON: an attribute the event does not have is absent, not null."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _same_schema(a: pa.Schema, b: pa.Schema) -> bool:
    """Same fields (names, types, nullability, nesting) and the same schema metadata (OCSF version and class)."""
    return a.equals(b) and a.metadata == b.metadata


def _bucket_objects(s3_server: Any, bucket: str) -> dict[str, bytes]:
    client = s3_server.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def _export(pg: Any, s3_server: Any, rows: list[dict[str, Any]]) -> ObjectStore:
    pg.insert(rows)
    store = ObjectStore(f"s3://{s3_server.new_bucket()}/archive", endpoint_url=s3_server.endpoint_url)
    with PostgresSource(pg.readonly_url, batch_rows=1_000) as source:
        export_day(source, store, DAY, ExportSettings(parquet_row_group_rows=1_000))
    return store


@pytest.mark.parametrize("version", VERSIONS)
def test_a_day_of_2000_mixed_events_on_s3(pg: Any, s3_server: Any, ocsf_schemas: dict[str, Any], version: str) -> None:
    rows = day_rows(2_000)  # 2,000 synthetic events of every type, and the edge rows (NULLs, IPv6, netmasks, unknown types)
    archive = _export(pg, s3_server, rows)
    bucket = s3_server.new_bucket()
    lake = ObjectStore(f"s3://{bucket}", endpoint_url=s3_server.endpoint_url, sse="none", setting="security_lake.url")
    settings = _settings(f"s3://{bucket}", version, s3_endpoint_url=s3_server.endpoint_url)
    signer = HmacSigner(b"k" * 32)
    done = export_lake_day(settings, archive, lake, DAY, signer, read_batch_rows=1_000)

    stored = _bucket_objects(s3_server, bucket)
    layout = {f"ext/{NAMES[c]}/region={REGION}/accountId={ACCOUNT}/eventDay=20240115/{NAMES[c]}_20240115.parquet": c for c in NAMES}
    assert set(stored) == {*layout, "manifests/security-lake/eventDay=20240115.json"}
    head = s3_server.client().head_object(Bucket=bucket, Key=next(iter(layout)))
    assert head["ContentType"] == "application/vnd.apache.parquet"

    validator = OcsfValidator(ocsf_schemas[version])
    expected = {r["id"]: r for r in as_batch(rows).batch.to_pylist()}
    mapper = OcsfMapper(OcsfSettings(version=version))
    batch = as_batch(rows)
    direct = {e["metadata"]["uid"]: e for e in (json.loads(line) for line in mapper.encode_batch(batch.batch, list(batch.lines())))}
    per_class: dict[int, int] = {}
    problems: dict[str, list[str]] = {}
    for key, class_uid in layout.items():
        table = pq.read_table(io.BytesIO(stored[key]))
        # one class per object, and the object's columns are the class's fixed schema
        assert set(table.column("class_uid").to_pylist()) == {class_uid}, key
        assert _same_schema(table.schema, class_schema(class_uid, version)), key
        per_class[class_uid] = table.num_rows
        for row in table.to_pylist():
            event = _without_nulls(row)
            found = validator.problems(event)
            if found:
                problems[event["metadata"]["uid"]] = found
            uid = event["metadata"]["uid"]
            # nothing the mapping wrote was lost on the way into Parquet
            assert {k: v for k, v in event.items() if k != "unmapped"} == {k: v for k, v in direct[uid].items() if k != "unmapped"}, uid
            original = expected[uid]
            assert row["unmapped"]["actor_email"] == original["actor_email"] and row["unmapped"]["ip_address"] == original["ip_address"]
            assert row["unmapped"]["metadata"] == original["metadata"]
            assert row["unmapped"]["created_at"] == original["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert not problems, json.dumps(dict(list(problems.items())[:5]), indent=1)
    # the rows of the classes add up to the day's, as the Parquet export's own footer states it
    export_rows = pq.read_metadata(
        io.BytesIO(_bucket_objects(s3_server, archive.root.split("/")[0])["archive/parquet/date=2024-01-15/audit_logs.parquet"])
    ).num_rows
    assert sum(per_class.values()) == export_rows == len(rows) == done.rows
    assert all(per_class.values())

    manifest = LakeManifest.from_bytes(stored[lake_manifest_key(DAY)])
    assert manifest.signature is not None and signer.matches(manifest.signing_payload(), base64.b64decode(manifest.signature.value))
    assert {o.key: (o.rows, o.class_uid) for o in manifest.objects} == {k: (per_class[c], c) for k, c in layout.items()}
    assert manifest.source.rows == export_rows and manifest.ocsf_version == version
    verdicts = check_lake_day(settings, archive, lake, DAY)
    assert all(v.passed for v in verdicts.values()), {k: v.description for k, v in verdicts.items()}

    # a re-run of the day, reading the export in other batches, publishes the same bytes
    export_lake_day(settings, archive, lake, DAY, signer, read_batch_rows=777)
    assert _bucket_objects(s3_server, bucket) == stored


_OCSF_TYPES = {"integer_t": pa.int32(), "long_t": pa.int64(), "timestamp_t": pa.int64(), "boolean_t": pa.bool_()}


def _base_type(schema: dict[str, Any], name: str) -> str:
    types = schema["types"]
    while name in types and types[name].get("type") and types[name]["type"] != name:
        name = types[name]["type"]
    return name


def _column_problems(schema: dict[str, Any], kind: pa.DataType, spec: dict[str, Any], where: str) -> list[str]:
    if spec.get("is_array"):
        if not pa.types.is_list(kind):
            return [f"{where}: an OCSF array, Parquet {kind}"]
        kind = kind.value_type
    name = spec["type"]
    if name in ("object", "json_t"):  # free-form (unmapped): any struct
        return [] if pa.types.is_struct(kind) else [f"{where}: an OCSF object, Parquet {kind}"]
    if name in schema["objects"]:
        if not pa.types.is_struct(kind):
            return [f"{where}: the OCSF object {name}, Parquet {kind}"]
        attributes = schema["objects"][name]["attributes"]
        out = []
        for child in kind:
            if child.name not in attributes:
                out.append(f"{where}.{child.name}: not an attribute of {name}")
            else:
                out += _column_problems(schema, child.type, attributes[child.name], f"{where}.{child.name}")
        return out
    base = _base_type(schema, name)
    wanted = _OCSF_TYPES.get(base, pa.string())
    return [] if kind == wanted else [f"{where}: OCSF {name} ({base}) wants {wanted}, Parquet has {kind}"]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_parquet_columns_have_the_compiled_schemas_types(version: str, ocsf_schemas: dict[str, Any]) -> None:
    """Written from the compiled OCSF schema: integer_t int32, long_t and timestamp_t int64, objects structs, arrays lists."""
    schema = ocsf_schemas[version]
    classes = {int(c["uid"]): c for c in schema["classes"].values()}
    problems = []
    for class_uid in CLASS_NAMES:
        attributes = classes[class_uid]["attributes"]
        for field in class_schema(class_uid, version):
            if field.name not in attributes:
                problems.append(f"{class_uid} {field.name}: not an attribute of the class")
                continue
            problems += _column_problems(schema, field.type, attributes[field.name], f"{class_uid} {field.name}")
            if attributes[field.name].get("requirement") == "required" and not attributes[field.name].get("profile"):
                assert not field.nullable, (class_uid, field.name)
    assert not problems, problems


def test_every_object_of_a_class_has_the_same_schema_whatever_the_day_holds(tmp_path: Path, pg: Any) -> None:
    """A day of one bare login (no actor, no IP, no tenant) gives the same Parquet schema as a full day."""
    archive = ObjectStore(str(tmp_path / "archive"))
    pg.insert(edge_events()[:1])  # alog_edge_nulls: user.login with every nullable column NULL
    with PostgresSource(pg.readonly_url) as source:
        export_day(source, archive, DAY, ExportSettings())
    lake = ObjectStore(str(tmp_path / "lake"))
    private_key = Ed25519PrivateKey.generate()
    signer = Ed25519Signer(private_key)
    done = export_lake_day(_settings(str(tmp_path / "lake")), archive, lake, DAY, signer)
    ((key, rows),) = [(o.key, o.rows) for o in done.manifest.objects]
    # signed with Ed25519 as the day manifests are, and the public key published beside it
    manifest = LakeManifest.from_bytes(lake.read_bytes(lake_manifest_key(DAY)))
    assert manifest.signature is not None and manifest.signature.key_id == signer.key_id
    private_key.public_key().verify(base64.b64decode(manifest.signature.value), manifest.signing_payload())
    assert lake.exists(f"manifests/public_keys/{signer.key_id}.pem")
    assert rows == 1 and key.startswith("ext/hj-auth/")
    written = pq.read_schema(lake.path(key))
    assert _same_schema(written, class_schema(3002, "1.1.0"))
    assert "src_endpoint" in written.names and "actor" in written.names  # columns of attributes this day never had


def test_a_class_that_lost_its_events_loses_its_object_and_the_checks_see_tampering(tmp_path: Path, pg: Any) -> None:
    archive, lake_path = ObjectStore(str(tmp_path / "archive")), str(tmp_path / "lake")
    lake = ObjectStore(lake_path)
    settings = _settings(lake_path)
    pg.insert(day_rows(300))
    with PostgresSource(pg.readonly_url) as source:
        export_day(source, archive, DAY, ExportSettings())
    first = export_lake_day(settings, archive, lake, DAY)
    assert len(first.manifest.objects) == 5
    assert all(v.passed for v in check_lake_day(settings, archive, lake, DAY).values())

    # an object of another class put in a source's folder: the footer statistics show it
    auth = next(o.key for o in first.manifest.objects if o.class_uid == 3002)
    entity = next(o.key for o in first.manifest.objects if o.class_uid == 3004)
    Path(lake.path(auth)).write_bytes(Path(lake.path(entity)).read_bytes())
    verdicts = check_lake_day(settings, archive, lake, DAY)
    assert not verdicts["one_class_per_object"].passed and "not only 3002" in verdicts["one_class_per_object"].description
    assert not verdicts["rows_add_up"].passed

    # the day re-exported with logins only: the other classes' objects are removed, the checks pass again
    pg.reset()
    pg.insert([r for r in day_rows(300) if r["type"] == "user.login"])
    with PostgresSource(pg.readonly_url) as source:
        export_day(source, archive, DAY, ExportSettings())
    again = export_lake_day(settings, archive, lake, DAY)
    assert [o.class_uid for o in again.manifest.objects] == [3002]
    assert [k for k in lake.list("ext") if k.endswith(".parquet")] == [auth]
    assert all(v.passed for v in check_lake_day(settings, archive, lake, DAY).values())


def test_no_export_of_the_day_is_one_clear_error(tmp_path: Path) -> None:
    from audit_pipeline.security_lake.export import SecurityLakeError

    with pytest.raises(SecurityLakeError, match=r"audit_logs\.parquet does not exist: materialize audit_logs_parquet for 2024-01-15 first"):
        export_lake_day(_settings(str(tmp_path / "lake")), ObjectStore(str(tmp_path / "archive")), ObjectStore(str(tmp_path / "lake")), DAY)
    assert not (tmp_path / "lake" / "ext").exists()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"source_names": {3002: "hellojohn-authentication"}},
            r"security_lake\.source_names.*'hellojohn-authentication' \(class 3002\): a custom-source name is 1-20",
        ),
        ({"source_names": {3002: "same", 3001: "same"}}, r"security_lake\.source_names.*'same' names both class 3001 and class 3002"),
        ({"source_names": {4001: "network"}}, r"security_lake\.source_names.*4001 is not an OCSF class the mapping writes"),
        ({"region": None}, r"security_lake.*enabled needs region: set security_lake\.region"),
        ({"account_id": "12345"}, r"security_lake\.account_id.*12-digit AWS account id"),
        ({"ocsf": {"version": "1.3.0"}}, r"security_lake\.ocsf\.version"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, section: dict[str, Any], message: str) -> None:
    config = {"security_lake": {"enabled": True, "url": "s3://lake", "region": REGION, "account_id": ACCOUNT, **section}}
    path = tmp_path / "audit_pipeline.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    with pytest.raises(ConfigError, match=message):
        load_settings(path, env={})


def test_defaults_and_an_account_given_as_a_number(tmp_path: Path) -> None:
    path = tmp_path / "audit_pipeline.yaml"
    path.write_text("security_lake:\n  enabled: true\n  url: s3://lake\n  region: us-east-1\n  account_id: 123456789012\n  source_names: {3002: my-auth}\n")
    lake = load_settings(path, env={}).security_lake
    assert lake.account_id == "123456789012" and lake.ocsf.version == "1.1.0"
    assert lake.source_names == {3001: "hellojohn-account", 3002: "my-auth", 3004: "hellojohn-entity", 3005: "hellojohn-access", 3006: "hellojohn-group"}
    assert all(len(name) <= 20 for name in lake.source_names.values())
    assert not SecurityLakeSettings().enabled  # opt-in


def test_the_asset_exists_only_when_enabled(workdir: Path) -> None:
    from audit_pipeline.config.settings import Settings
    from audit_pipeline.defs.build import build_definitions

    off = build_definitions(Settings())
    on = build_definitions(Settings.model_validate({"security_lake": {"enabled": True, "url": str(workdir), "region": REGION, "account_id": ACCOUNT}}))
    key = "audit_logs_ocsf_security_lake"
    assert key not in {k.to_user_string() for k in off.resolve_asset_graph().get_all_asset_keys()}
    graph = on.resolve_asset_graph()
    assert key in {k.to_user_string() for k in graph.get_all_asset_keys()}
    node = next(n for n in graph.asset_nodes if n.key.to_user_string() == key)
    assert {k.to_user_string() for k in node.parent_keys} == {"audit_logs_parquet"}
    assert {c.name for c in node.check_keys} == {"rows_add_up", "one_class_per_object"}
    assert dt.date.fromisoformat(node.partitions_def.get_first_partition_key()) == Settings().export.partition_start  # type: ignore[union-attr]


def test_the_asset_and_its_checks_run_in_dagster(workdir: Path, pg: Any) -> None:
    """Materialized through Dagster from a config file: reads the export store's Parquet, the checks pass."""
    import dagster as dg

    from audit_pipeline.defs.partitions import daily_partitions_from
    from audit_pipeline.defs.resources import AuditPipelineResource
    from audit_pipeline.defs.security_lake import build_security_lake_definitions

    config = workdir / "audit_pipeline.yaml"
    lake_dir = workdir / "lake"
    config.write_text(
        json.dumps(
            {
                "export": {"url": str(workdir / "archive")},
                "integrity": {"enabled": False},
                "security_lake": {"enabled": True, "url": str(lake_dir), "region": REGION, "account_id": ACCOUNT},
            }
        )
    )
    settings = load_settings(config, env={})
    lake_defs = build_security_lake_definitions(settings, daily_partitions_from(settings.export.partition_start))
    definitions = [*(lake_defs.assets or []), *(lake_defs.asset_checks or [])]
    resources = {"audit": AuditPipelineResource(config_path=str(config))}

    failed = dg.materialize(definitions, partition_key=DAY.isoformat(), resources=resources, raise_on_error=False)  # type: ignore[arg-type]
    assert not failed.success  # no export of the day yet: one line saying what to do
    (failure,) = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "materialize audit_logs_parquet for 2024-01-15 first" in failure.step_failure_data.error.message  # type: ignore[union-attr]

    pg.insert(day_rows(500))
    with PostgresSource(pg.readonly_url) as source:
        export_day(source, ObjectStore(str(workdir / "archive")), DAY, ExportSettings())
    result = dg.materialize(definitions, partition_key=DAY.isoformat(), resources=resources)  # type: ignore[arg-type]
    assert result.success
    (materialization,) = result.asset_materializations_for_node("audit_logs_ocsf_security_lake")
    assert materialization.metadata["dagster/row_count"].value == 515
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {"rows_add_up": True, "one_class_per_object": True}
    assert len([k for k in ObjectStore(str(lake_dir)).list("ext") if k.endswith(".parquet")]) == 5


def test_a_source_name_too_long_is_one_line_and_exit_2(workdir: Path) -> None:
    from click.testing import CliRunner

    from audit_pipeline.cli.app import main

    (workdir / "audit_pipeline.yaml").write_text(
        "security_lake:\n  enabled: true\n  url: s3://lake\n  region: us-east-1\n  account_id: '123456789012'\n"
        "  source_names:\n    3002: hellojohn-authentication-events\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["config", "check"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    assert "security_lake.source_names" in line and "1-20 letters" in line and "Traceback" not in result.stderr
