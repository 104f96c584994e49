"""Issue scenarios: an attacker who can write the export store and the database (but has no key), or an
operator's typo, must never make retention delete the only good copy of an event.

Every test runs against the real PostgreSQL with the exports on S3 (moto's server over HTTP) and
ends the same way: every original event is still in the database, or in an export that verifies
with the configured keys.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import pytest
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.config.sections.integrity import IntegritySettings
from audit_pipeline.config.settings import Settings
from audit_pipeline.core.layout import FORMATS, HEAD_KEY, manifest_key
from audit_pipeline.defs.integrity import verify_job
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.exports.day import export_day
from audit_pipeline.integrity.errors import IntegrityError
from audit_pipeline.integrity.manifest import Manifest
from audit_pipeline.integrity.sealing import DaySealer
from audit_pipeline.integrity.signing import Ed25519Signer, Keyring
from audit_pipeline.integrity.verify import Verifier
from audit_pipeline.retention.clock import ClockError
from audit_pipeline.retention.run import run_retention
from audit_pipeline.sources.registry import open_source
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.conftest import PgDatabase, S3Server
from audit_pipeline_tests.retention.support import day_range, export_days, fill_days, settings_for
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

pytestmark = pytest.mark.slow  # each test exports, verifies and retains several days

D = dt.date
DAYS = day_range(D(2024, 1, 10), D(2024, 1, 16))
TODAY = D(2024, 3, 1)  # every day above is past retention.database: 30d
HMAC_SECRET = "0123456789abcdef0123456789abcdef-hmac-secret"


# -- the invariant -------------------------------------------------------------------------------
def _snapshot(pg: PgDatabase) -> dict[str, tuple[Any, ...]]:
    return {row[0]: tuple(row) for row in pg.fetch("SELECT id, type, actor_email, result, created_at, metadata::text FROM audit_logs")}


def _exported_events(store: ObjectStore, manifest: Manifest) -> dict[str, dict[str, Any]]:
    entry = manifest.object_for("ndjson")
    assert entry is not None
    return {event["id"]: event for event in (orjson.loads(line) for line in store.read_bytes(entry.key).splitlines())}


def assert_every_original_event_survives(pg: PgDatabase, settings: Settings, originals: dict[str, tuple[Any, ...]]) -> None:
    """Each original event is in the database unchanged, or in an export of a day that verifies with the configured keys."""
    in_database = _snapshot(pg)
    store = ObjectStore.from_settings(settings.export)
    verifier = Verifier(store, Keyring.build(settings.integrity))
    verified: dict[str, dict[str, Any]] = {}
    for day in DAYS:
        if verifier.verify_day(day).ok and store.exists(manifest_key(day)):
            verified.update(_exported_events(store, Manifest.from_bytes(store.read_bytes(manifest_key(day)))))
    lost = []
    for event_id, row in originals.items():
        if in_database.get(event_id) == row:
            continue
        exported = verified.get(event_id)
        if exported is None or (exported["type"], exported["actor_email"], exported["result"]) != (row[1], row[2], row[3]):
            lost.append(event_id)
    assert not lost, f"{len(lost)} original events exist nowhere in verified form, e.g. {lost[:3]}"


# -- set-up --------------------------------------------------------------------------------------
def _settings(tmp_path: Path, pg: PgDatabase, s3: S3Server, integrity: dict[str, Any], **sections: Any) -> Settings:
    bucket = f"s3://{s3.new_bucket()}/audit"
    return settings_for(tmp_path, pg, {"database": "30d"}, exports=bucket, export={"s3_endpoint_url": s3.endpoint_url}, integrity=integrity, **sections)


def _keys(tmp_path: Path, kind: str) -> dict[str, Any]:
    if kind == "unsigned":
        return {}
    if kind == "hmac":
        path = tmp_path / "manifest.hmac"
        path.write_text(HMAC_SECRET)
        return {"hmac_key_file": str(path)}
    path = tmp_path / "manifest_key.pem"
    path.write_bytes(Ed25519Signer.generate().private_pem())
    return {"private_key_file": str(path)}


def _exported(pg: PgDatabase, s3: S3Server, tmp_path: Path, kind: str, per_day: int) -> tuple[dict[str, tuple[Any, ...]], Settings]:
    """Rows on every day of DAYS, exported and sealed (signed with a ``kind`` key); returns the original events and the settings."""
    fill_days(pg, DAYS[0], DAYS[-1], per_day=per_day)
    settings = _settings(tmp_path, pg, s3, _keys(tmp_path, kind))
    export_days(settings, DAYS)
    return _snapshot(pg), settings


def _delete_day(store: ObjectStore, day: dt.date) -> None:
    """Remove a day from the store entirely: its manifest and every object."""
    for key in [manifest_key(day), *(k for fmt in FORMATS for k in store.list(f"{fmt}/date={day}"))]:
        store.delete(key)


def _attacker_settings(settings: Settings, tmp_path: Path, integrity: dict[str, Any]) -> Settings:
    """The same store and database, with the attacker's own integrity section (no access to the key)."""
    folder = tmp_path / "attacker"
    folder.mkdir(exist_ok=True)
    return settings.model_copy(update={"integrity": IntegritySettings.model_validate(integrity), "state_url": f"sqlite:///{folder / 'state.db'}"})


def _forge_days(pg: PgDatabase, settings: Settings, days: list[dt.date], *, link_forward: bool = True) -> str:
    """Replace ``days`` by consistent re-exports in which one event was edited; the database row is put back afterwards."""
    store = ObjectStore.from_settings(settings.export)
    victim = pg.fetch("SELECT id, type, actor_email FROM audit_logs WHERE created_at >= %s ORDER BY created_at, id LIMIT 1", _midnight(days[0]))[0]
    for day in days:
        _delete_day(store, day)
    _execute(pg, "UPDATE audit_logs SET type = 'user.logout', actor_email = 'innocent@x.y' WHERE id = %s", victim[0])
    try:
        with open_source(settings) as source:
            for day in days:
                sealer = DaySealer.from_settings(settings, store, day)
                export_day(source, store, day, settings.export, **sealer.export_hooks())
                if link_forward:
                    sealer.after_publish()
    finally:
        _execute(pg, "UPDATE audit_logs SET type = %s, actor_email = %s WHERE id = %s", victim[1], victim[2], victim[0])
    return str(victim[0])


def _execute(pg: PgDatabase, statement: str, *params: Any) -> None:
    with pg.connect() as conn:
        conn.execute(statement, params)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _cli(settings_path: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(settings_path), *args])


def _rows(pg: PgDatabase) -> dict[dt.date, int]:
    return {row[0]: int(row[1]) for row in pg.fetch("SELECT (created_at AT TIME ZONE 'UTC')::date, count(*) FROM audit_logs GROUP BY 1")}


# -- 1. downgrade to unsigned forgeries ----------------------------------------------------------
@pytest.mark.parametrize("kind", ["ed25519", "hmac"])
def test_unsigned_forgeries_of_signed_days_fail_verify_and_keep_their_rows(pg: PgDatabase, s3_server: S3Server, tmp_path: Path, kind: str) -> None:
    originals, settings = _exported(pg, s3_server, tmp_path, kind, per_day=20)
    forged = DAYS[3:]  # 2024-01-13 ... 2024-01-16, re-exported without signing, on top of a signed 2024-01-12
    attacker = _attacker_settings(settings, tmp_path, {"signing": "none", "require_signature": False})
    _forge_days(pg, attacker, forged, link_forward=False)  # each day continues from the one before: no re-linking, no new head

    verify = _cli(tmp_path / "audit_pipeline.yaml", "verify")
    assert verify.exit_code == 1, verify.output
    for day in forged:
        assert f"{day}  FAILED" in verify.output
    assert "unsigned, but a signature is required (a signing key is configured in integrity:; manifests are signed from 2024-01-10 on" in verify.output

    # The Dagster check says the same.
    report = Verifier(ObjectStore.from_settings(settings.export), Keyring.build(settings.integrity)).verify_day(forged[0])
    assert not report.ok and report.problems[0].kind == "signature"

    # The signed head still names the original 2024-01-16: the forgery also shows there, and nothing is deleted.
    assert "HEAD FAILED: manifests/date=2024-01-16.json changed after the head was written" in verify.output
    result = run_retention(settings, today=TODAY)
    assert result.plan is not None and not any(result.rows_deleted.values())
    kept = {d.day: d.reason for d in result.plan.days_kept}
    assert kept[D(2024, 1, 12)].startswith("the next day, 2024-01-13, does not verify (manifest altered or signature invalid")
    assert all(kept[day].startswith("its exports do not verify") for day in forged)
    assert kept[D(2024, 1, 10)].startswith("the export store's head does not check out (manifests/date=2024-01-16.json changed after the head was written")

    # The next export refuses to sign a new day on top of the forgery.
    fill_days(pg, D(2024, 1, 17), D(2024, 1, 17), per_day=10)
    with pytest.raises(IntegrityError, match=r"refusing to continue the chain of 2024-01-17 from manifests/date=2024-01-16.json: unsigned"):
        export_days(settings, [D(2024, 1, 17)])
    assert_every_original_event_survives(pg, settings, originals)


def test_a_forgery_signed_with_the_attackers_own_key_is_not_trusted(pg: PgDatabase, s3_server: S3Server, tmp_path: Path) -> None:
    originals, settings = _exported(pg, s3_server, tmp_path, "ed25519", per_day=20)
    own_key = tmp_path / "attacker.pem"
    own_key.write_bytes(Ed25519Signer.generate().private_pem())
    _forge_days(pg, _attacker_settings(settings, tmp_path, {"private_key_file": str(own_key)}), DAYS[5:])
    verify = _cli(tmp_path / "audit_pipeline.yaml", "verify")
    assert verify.exit_code == 1 and "which is not a trusted key" in verify.output
    result = run_retention(settings, today=TODAY)
    assert not {d for d, n in result.rows_deleted.items() if n} & set(DAYS[4:])
    assert_every_original_event_survives(pg, settings, originals)


def test_turning_signatures_off_is_a_warning_on_every_run(pg: PgDatabase, s3_server: S3Server, tmp_path: Path) -> None:
    fill_days(pg, DAYS[0], DAYS[1], per_day=5)
    settings = _settings(tmp_path, pg, s3_server, {**_keys(tmp_path, "ed25519"), "require_signature": False})
    export_days(settings, DAYS[:2])
    for _ in range(2):
        verify = _cli(tmp_path / "audit_pipeline.yaml", "verify")
        assert "warning: integrity.require_signature is false: unsigned manifests are accepted" in verify.stderr
    warnings: list[str] = []
    run_retention(settings, today=TODAY, dry_run=True, warn=warnings.append)
    assert any(w.startswith("integrity.require_signature is false") for w in warnings)


# -- 2. --today beyond the database's date -------------------------------------------------------
def test_today_in_the_future_exits_2_and_deletes_nothing(pg: PgDatabase, s3_server: S3Server, tmp_path: Path) -> None:
    fill_days(pg, DAYS[0], DAYS[-1], per_day=10)
    originals = _snapshot(pg)
    settings = _settings(tmp_path, pg, s3_server, {})
    settings_path = tmp_path / "audit_pipeline.yaml"
    config = settings_path.read_text().replace("retention:\n", "retention:\n  exports: {csv: 7d, ndjson: 7d}\n")
    settings_path.write_text(config)
    export_days(settings, DAYS)
    store = ObjectStore.from_settings(settings.export)
    objects_before = sorted(store.list(""))
    result = _cli(settings_path, "retention", "--today", "2099-01-01")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --today 2099-01-01 is after the database's date (")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert _snapshot(pg) == originals and sorted(store.list("")) == objects_before
    # An earlier day is allowed: a preview.
    preview = _cli(settings_path, "retention", "--today", "2024-01-20", "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert _snapshot(pg) == originals
    assert_every_original_event_survives(pg, settings, originals)


def test_the_local_clock_is_checked_against_the_databases(pg: PgDatabase, s3_server: S3Server, tmp_path: Path) -> None:
    fill_days(pg, DAYS[0], DAYS[0], per_day=3)
    settings = _settings(tmp_path, pg, s3_server, {})
    database_now = pg.fetch("SELECT now()")[0][0]
    with pytest.raises(ClockError, match=r"more than a day: nothing was deleted; fix the clock \(NTP\)"):
        run_retention(settings, clock=lambda: database_now + dt.timedelta(days=2))
    warnings: list[str] = []
    run_retention(settings, dry_run=True, clock=lambda: database_now - dt.timedelta(minutes=20), warn=warnings.append)
    assert any(w.startswith("the local clock is 20 minutes away from the database clock") for w in warnings)
    assert _rows(pg) == {DAYS[0]: 3}


# -- 3. a replaced day caught by its successor's link --------------------------------------------
def test_a_replaced_day_caught_by_the_next_days_link_is_kept(pg: PgDatabase, s3_server: S3Server, tmp_path: Path) -> None:
    originals, settings = _exported(pg, s3_server, tmp_path, "unsigned", per_day=20)
    _forge_days(pg, settings, [D(2024, 1, 12)], link_forward=False)
    verify = _cli(tmp_path / "audit_pipeline.yaml", "verify")
    assert verify.exit_code == 1 and "manifests/date=2024-01-12.json changed after this day was sealed" in verify.output

    dry = run_retention(settings, today=TODAY, dry_run=True)
    assert dry.plan is not None
    kept = {d.day: d.reason for d in dry.plan.days_kept}
    assert kept[D(2024, 1, 12)].startswith("the next day, 2024-01-13, does not verify (manifests/date=2024-01-12.json changed after this day was sealed")
    assert kept[D(2024, 1, 13)].startswith("its exports do not verify")
    result = run_retention(settings, today=TODAY)
    assert {D(2024, 1, 12), D(2024, 1, 13)} <= set(_rows(pg))
    assert result.rows_deleted.keys() == {d.day for d in dry.plan.days_to_delete}
    assert_every_original_event_survives(pg, settings, originals)


# -- 5. tail truncation and a rolled-back head ---------------------------------------------------
@pytest.mark.parametrize("kind", ["ed25519", "unsigned"])
def test_deleted_newest_days_are_reported_without_to(pg: PgDatabase, s3_server: S3Server, tmp_path: Path, kind: str) -> None:
    originals, settings = _exported(pg, s3_server, tmp_path, kind, per_day=10)
    store = ObjectStore.from_settings(settings.export)
    for day in DAYS[-2:]:
        _delete_day(store, day)
    verify = _cli(tmp_path / "audit_pipeline.yaml", "verify")
    assert verify.exit_code == 1, verify.output
    assert "2024-01-16  FAILED" in verify.output and "manifest missing: manifests/date=2024-01-16.json" in verify.output
    assert "HEAD FAILED: the head names 2024-01-16, but the newest manifest is 2024-01-14: the newest days were deleted from the store" in verify.output
    if kind == "unsigned":
        assert "head: 2024-01-16 (unsigned: deleting the newest days is only detectable with a signature)" in verify.output
    # The Dagster verify job fails the same way.
    job = verify_job.execute_in_process(
        run_config={"ops": {"verify_exports": {"config": {"days": 0}}}},
        resources={"audit": AuditPipelineResource(config_path=str(tmp_path / "audit_pipeline.yaml"))},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    failure = next(e for e in job.all_events if e.is_step_failure)
    assert "the head names 2024-01-16, but the newest manifest is 2024-01-14" in failure.step_failure_data.user_failure_data.description
    result = run_retention(settings, today=TODAY)
    assert not any(result.rows_deleted.values()) and _snapshot(pg) == originals
    assert result.plan is not None
    reasons = {d.day: d.reason for d in result.plan.days_kept}
    assert all(reasons[day].startswith("the export store's head does not check out (the head names 2024-01-16") for day in DAYS[:5])
    assert all(reasons[day].startswith("not exported: no manifest and no objects") for day in DAYS[5:])
    assert_every_original_event_survives(pg, settings, originals)


def test_a_replayed_older_head_is_a_rollback(pg: PgDatabase, s3_server: S3Server, tmp_path: Path) -> None:
    fill_days(pg, DAYS[0], DAYS[-1], per_day=10)
    originals = _snapshot(pg)
    settings = _settings(tmp_path, pg, s3_server, _keys(tmp_path, "ed25519"))
    export_days(settings, DAYS[:5])
    store = ObjectStore.from_settings(settings.export)
    old_head = store.read_bytes(HEAD_KEY)  # validly signed, naming 2024-01-14
    export_days(settings, DAYS[5:])
    # The attacker deletes the two newest days and puts the older head back: the store is consistent again.
    for day in DAYS[5:]:
        _delete_day(store, day)
    store.put_bytes(HEAD_KEY, old_head, "application/json")
    verify = _cli(tmp_path / "audit_pipeline.yaml", "verify")
    assert verify.exit_code == 1, verify.output
    assert (
        "HEAD FAILED: manifests/head.json was rolled back: it is update 5 naming 2024-01-14, but the exports wrote update 7 naming 2024-01-16, "
        "and the newest manifest is 2024-01-14: an older head was put back after the newest days were deleted" in verify.output
    )
    result = run_retention(settings, today=TODAY)
    assert not any(result.rows_deleted.values())
    assert_every_original_event_survives(pg, settings, originals)


# -- 4. a sink holding one event fewer than the database -----------------------------------------
def test_a_sink_holding_one_event_fewer_keeps_the_day(pg: PgDatabase, s3_server: S3Server, tmp_path: Path) -> None:
    fill_days(pg, DAYS[0], DAYS[3], per_day=50)  # the sink's position ends inside 2024-01-13, which is not exported
    with ElasticsearchStandIn() as es:
        sinks = {"elasticsearch": {"url": es.url, "start": "earliest"}}
        settings = _settings(tmp_path, pg, s3_server, {}, sinks=sinks, forwarding={"settle_seconds": 1})
        forwarded = _cli(tmp_path / "audit_pipeline.yaml", "forward", "elasticsearch", "--once")
        assert forwarded.exit_code == 0, forwarded.output
        # A row that commits behind the sink's position: never delivered, yet exported with its day.
        pg.insert([{"id": "alog_late_0001", "created_at": _midnight(DAYS[1]) + dt.timedelta(hours=1)}])
        originals = _snapshot(pg)
        export_days(settings, DAYS[:3])
        again = _cli(tmp_path / "audit_pipeline.yaml", "forward", "elasticsearch", "--once")
        assert again.exit_code == 0, again.output
        assert "alog_late_0001" not in es.documents()

        result = run_retention(settings, today=TODAY)
        assert result.plan is not None
        assert sorted(d for d, n in result.rows_deleted.items() if n) == [DAYS[0], DAYS[2]]
        assert next((d.day, d.reason) for d in result.plan.days_kept) == (
            DAYS[1],
            "sink elasticsearch holds 50 of the day's 51 exported events (_count of their ids in hellojohn-audit-2024.01.11): kept until it holds them all",
        )
    assert _rows(pg) == {DAYS[1]: 51, DAYS[3]: 50}
    assert_every_original_event_survives(pg, settings, originals)
