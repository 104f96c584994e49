"""Issue 25 (3): retention never erases the evidence of tampering.

A day that fails verification (objects swapped between days, an object edited, a manifest
removed, the head rolled back) keeps every object and row, run after run, gets no retirement
record, stays FAILED in ``verify``, and the dry run and the Dagster run's metadata say why.
Real PostgreSQL, exports on S3 (moto's server over HTTP).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner, Result
from elasticsearch import Elasticsearch

from audit_pipeline.cli.app import main
from audit_pipeline.config.settings import Settings
from audit_pipeline.core.layout import FORMATS, HEAD_KEY, manifest_key
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.defs.retention import retention_job
from audit_pipeline.integrity.retirement import read_retirement
from audit_pipeline.integrity.signing import Ed25519Signer
from audit_pipeline.retention.run import run_retention
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.conftest import PgDatabase, S3Server
from audit_pipeline_tests.retention.support import day_range, export_days, fill_days, rows_per_day, settings_for
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

pytestmark = pytest.mark.slow  # each test exports, tampers with, verifies and retains several days

D = dt.date
DAYS = day_range(D(2024, 1, 10), D(2024, 1, 16))
TODAY = D(2024, 3, 1)  # every day above is past every policy below (30d)
POLICY = {"database": "30d", "exports": {"csv": "30d", "ndjson": "30d", "parquet": "30d"}}


def _settings(tmp_path: Path, pg: PgDatabase, s3: S3Server, signing: str) -> Settings:
    integrity: dict[str, Any] = {}
    if signing == "ed25519":
        key = tmp_path / "manifest_key.pem"
        key.write_bytes(Ed25519Signer.generate().private_pem())
        integrity = {"private_key_file": str(key)}
    bucket = f"s3://{s3.new_bucket()}/audit"
    return settings_for(tmp_path, pg, POLICY, exports=bucket, export={"s3_endpoint_url": s3.endpoint_url}, integrity=integrity)


def _day_objects(store: ObjectStore, day: dt.date) -> dict[str, str]:
    """Every key of the day (its objects in each format, its manifest, a retirement record) with the SHA-256 of its bytes."""
    keys = [k for fmt in FORMATS for k in store.list(f"{fmt}/date={day}")]
    keys += [k for k in store.list("manifests") if f"date={day}" in k]
    return {key: hashlib.sha256(store.read_bytes(key)).hexdigest() for key in keys}


def _everything(store: ObjectStore) -> dict[str, str]:
    return {key: hashlib.sha256(store.read_bytes(key)).hexdigest() for key in store.list("")}


def _cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def _dagster_retention(config: Path, dry_run: bool) -> dict[str, Any]:
    """One run of the Dagster retention job; returns its output's metadata."""
    result = retention_job.execute_in_process(
        run_config={"ops": {"apply_retention": {"config": {"today": TODAY.isoformat(), "dry_run": dry_run}}}},
        resources={"audit": AuditPipelineResource(config_path=str(config))},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    output = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
    return {k: v.value for k, v in output.event_specific_data.metadata.items()}


def _swap(store: ObjectStore) -> tuple[list[dt.date], str]:
    """The CSV objects of 2024-01-12 and 2024-01-13 trade places (each is a valid export, of the wrong day)."""
    first, second = "csv/date=2024-01-12/audit_logs.csv", "csv/date=2024-01-13/audit_logs.csv"
    a, b = store.read_bytes(first), store.read_bytes(second)
    store.put_bytes(first, b, "text/csv")
    store.put_bytes(second, a, "text/csv")
    return [D(2024, 1, 12), D(2024, 1, 13)], f"its exports do not verify: object modified: {first}"


def _edit(store: ObjectStore) -> tuple[list[dt.date], str]:
    key = "ndjson/date=2024-01-12/audit_logs.ndjson"
    store.put_bytes(key, store.read_bytes(key).replace(b"user.login", b"user.logout", 1), "application/x-ndjson")
    return [D(2024, 1, 12)], "its exports do not verify: object modified: ndjson/date=2024-01-12/audit_logs.ndjson"


def _remove_manifest(store: ObjectStore) -> tuple[list[dt.date], str]:
    store.delete(manifest_key(D(2024, 1, 12)))
    return [D(2024, 1, 12), D(2024, 1, 13)], "its objects have no manifest (manifests/date=2024-01-12.json)"


@pytest.mark.parametrize(
    ("tamper", "signing"),
    [(_swap, "ed25519"), (_edit, "unsigned"), (_remove_manifest, "unsigned")],
    ids=["objects swapped between days", "object edited", "manifest removed"],
)
def test_a_day_that_fails_verification_keeps_everything_through_two_passes(
    pg: PgDatabase, s3_server: S3Server, tmp_path: Path, tamper: Any, signing: str
) -> None:
    fill_days(pg, DAYS[0], DAYS[-1], per_day=20)
    settings = _settings(tmp_path, pg, s3_server, signing)
    config = tmp_path / "audit_pipeline.yaml"
    export_days(settings, DAYS)
    store = ObjectStore.from_settings(settings.export)
    failing, reason = tamper(store)
    # The failing days and the neighbours their chain evidence touches.
    held = day_range(failing[0] - dt.timedelta(days=1), failing[-1] + dt.timedelta(days=1))
    before = {day: _day_objects(store, day) for day in held}
    rows_before = rows_per_day(pg)

    dry = _cli(config, "retention", "--dry-run", "--today", TODAY.isoformat())
    assert dry.exit_code == 0, dry.output
    assert "held because they fail verification" in dry.output
    for day in held:
        assert f"  {day}  HELD   20 rows, 3 export object(s): " in dry.output
    assert f"  {failing[0]}  HELD   20 rows, 3 export object(s): {reason}" in dry.output
    assert "fail verification: none of their rows" in dry.stderr

    # Two passes: the command line, then the Dagster job.
    first = _cli(config, "retention", "--today", TODAY.isoformat())
    assert first.exit_code == 0, first.output
    metadata = _dagster_retention(config, dry_run=False)

    after = {day: _day_objects(store, day) for day in held}
    assert after == before  # not one object deleted or rewritten, no retirement record written
    assert all(read_retirement(store, day) is None for day in held)
    rows_after = rows_per_day(pg)
    assert {day: rows_after.get(day) for day in held} == {day: rows_before[day] for day in held}
    # The days that verify, away from the damage, were retired as usual: retention did run.
    untouched = [day for day in DAYS if day not in held]
    assert untouched and all(day not in rows_after and read_retirement(store, day) is not None for day in untouched)

    held_meta = {h["day"]: h for h in metadata["held_by_verification"]}
    assert set(held_meta) == {day.isoformat() for day in held}
    assert held_meta[failing[0].isoformat()]["rows"] == 20 and held_meta[failing[0].isoformat()]["reason"].startswith(reason)

    verify = _cli(config, "verify")
    assert verify.exit_code == 1, verify.output
    for day in failing:
        assert f"{day}  FAILED" in verify.output


def test_a_rolled_back_head_deletes_nothing_at_all(pg: PgDatabase, s3_server: S3Server, tmp_path: Path) -> None:
    fill_days(pg, DAYS[0], DAYS[-1], per_day=10)
    settings = _settings(tmp_path, pg, s3_server, "ed25519")
    config = tmp_path / "audit_pipeline.yaml"
    export_days(settings, DAYS[:5])
    store = ObjectStore.from_settings(settings.export)
    old_head = store.read_bytes(HEAD_KEY)  # validly signed, naming 2024-01-14
    export_days(settings, DAYS[5:])
    for day in DAYS[5:]:  # the attacker deletes the two newest days and puts the older head back
        for key in [manifest_key(day), *(k for fmt in FORMATS for k in store.list(f"{fmt}/date={day}"))]:
            store.delete(key)
    store.put_bytes(HEAD_KEY, old_head, "application/json")
    before, rows_before = _everything(store), rows_per_day(pg)

    dry = _cli(config, "retention", "--dry-run", "--today", TODAY.isoformat())
    assert dry.exit_code == 0, dry.output
    head = "the export store's head does not check out (manifests/head.json was rolled back"
    for day in DAYS[:5]:
        line = next(line for line in dry.output.splitlines() if line.startswith(f"  {day}  HELD"))
        assert line.startswith(f"  {day}  HELD   10 rows, 3 export object(s): {head}")
    assert dry.output.strip().splitlines()[-1].startswith("would delete: 0 rows of 0 day(s) from the database")
    assert "export objects: 0 csv, 0 ndjson, 0 parquet; daily summaries: 0" in dry.output

    for _ in range(2):
        again = _cli(config, "retention", "--today", TODAY.isoformat())
        assert again.exit_code == 0, again.output
    metadata = _dagster_retention(config, dry_run=False)
    assert _everything(store) == before and rows_per_day(pg) == rows_before
    assert [h["day"] for h in metadata["held_by_verification"]] == [day.isoformat() for day in DAYS[:5]]
    assert all(h["reason"].startswith(head) for h in metadata["held_by_verification"])

    verify = _cli(config, "verify")
    assert verify.exit_code == 1 and "HEAD FAILED: manifests/head.json was rolled back" in verify.output


def test_the_index_of_a_day_that_fails_verification_is_kept(pg: PgDatabase, tmp_path: Path) -> None:
    """Elasticsearch may hold the only other copy of a tampered day's events: its index stays too."""
    fill_days(pg, DAYS[0], DAYS[-1], per_day=5)
    with ElasticsearchStandIn() as es:
        settings = settings_for(tmp_path, pg, {"elasticsearch": "30d"}, sinks={"elasticsearch": {"url": es.url, "enabled": False}})
        export_days(settings, DAYS)
        client = Elasticsearch(es.url)
        names = {day: f"hellojohn-audit-{day:%Y.%m.%d}" for day in DAYS}
        operations: list[dict[str, Any]] = []
        for day, name in names.items():
            operations += [{"create": {"_index": name, "_id": f"{day}-1"}}, {"id": f"{day}-1", "type": "user.login"}]
        client.bulk(operations=operations, refresh=True)
        _edit(ObjectStore.from_settings(settings.export))  # 2024-01-12 fails; 2024-01-11 and -13 are its chain neighbours

        result = run_retention(settings, today=TODAY)
        assert result.plan is not None
        left = {r["index"] for r in client.cat.indices(index="hellojohn-audit-*", format="json")}
        assert left == {names[D(2024, 1, day)] for day in (11, 12, 13)}
        assert [(h.day, h.index) for h in result.plan.held] == [(D(2024, 1, day), names[D(2024, 1, day)]) for day in (11, 12, 13)]
        assert result.plan.indices_kept[names[D(2024, 1, 12)]][1].startswith("its exports do not verify: object modified: ndjson/date=2024-01-12")


def test_the_held_days_go_once_an_operator_resolves_them_with_rechain(pg: PgDatabase, s3_server: S3Server, tmp_path: Path) -> None:
    fill_days(pg, DAYS[0], DAYS[-1], per_day=20)
    settings = _settings(tmp_path, pg, s3_server, "ed25519")
    config = tmp_path / "audit_pipeline.yaml"
    export_days(settings, DAYS)
    store = ObjectStore.from_settings(settings.export)
    failing, _ = _swap(store)
    first = run_retention(settings, today=TODAY)
    assert first.plan is not None and [h.day for h in first.plan.held] == day_range(D(2024, 1, 11), D(2024, 1, 14))

    rechain = _cli(config, "rechain", "--from", str(failing[0]), "--to", str(failing[-1]), "--reason", "CSV objects of 12 and 13 swapped; re-exported")
    assert rechain.exit_code == 0, rechain.output
    # The rows were kept, so the re-export restores the original events: the days verify again.
    verify = _cli(config, "verify")
    assert verify.exit_code == 0, verify.output

    second = run_retention(settings, today=TODAY)
    assert second.plan is not None and second.plan.held == []
    assert rows_per_day(pg) == {} and all(read_retirement(store, day) is not None for day in DAYS)
    after = _cli(config, "verify")
    assert after.exit_code == 0 and all(f"{day}  RETIRED" in after.output for day in DAYS)
