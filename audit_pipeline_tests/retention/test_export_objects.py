"""Export retention on a local folder and on S3 (moto over HTTP): due objects go, verification still passes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from audit_pipeline.core.layout import summary_key
from audit_pipeline.integrity.retirement import read_retirement
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.integrity.verify import Verifier
from audit_pipeline.retention.export_objects import due_objects, due_summaries, exported_objects
from audit_pipeline.retention.run import run_retention
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.conftest import PgDatabase, S3Server
from audit_pipeline_tests.retention.support import day_range, export_days, fill_days, rows_per_day, settings_for

TODAY = dt.date(2024, 5, 20)
D = dt.date
DAYS = day_range(D(2024, 3, 1), D(2024, 3, 5))


@pytest.fixture(params=["local", "s3"])
def store_sections(request: pytest.FixtureRequest, tmp_path: Path) -> dict:
    """Where the exports go: a local folder, or a bucket on moto's S3 server through s3fs."""
    if request.param == "local":
        return {"exports": str(tmp_path / "exports")}
    server: S3Server = request.getfixturevalue("s3_server")
    return {"exports": f"s3://{server.new_bucket()}/audit", "export": {"s3_endpoint_url": server.endpoint_url}}


def _verify_all(settings) -> dict[dt.date, tuple[str, list[str]]]:
    verifier = Verifier(ObjectStore.from_settings(settings.export), Keyring.build(settings.integrity))
    return {r.day: (r.status, [p.message for p in r.problems]) for r in verifier.verify_range()}


def test_objects_past_their_format_policy_are_retired(pg: PgDatabase, tmp_path: Path) -> None:
    store_sections = {"exports": str(tmp_path / "exports")}  # S3 is covered below; this one reads every day back four times
    fill_days(pg, DAYS[0], DAYS[-1])
    # On 2024-05-20: CSV kept from 2024-03-11 (all five days go), NDJSON from 2024-03-03, Parquet forever.
    settings = settings_for(tmp_path, pg, {"exports": {"csv": "70d", "ndjson": "78d", "parquet": "unlimited"}}, **store_sections)
    export_days(settings, DAYS)
    store = ObjectStore.from_settings(settings.export)
    assert {s for s, _ in _verify_all(settings).values()} == {"OK"}
    foreign = ["csv/README.txt", "csv/date=2024-03-01/notes/keep.txt", "deadletters/elasticsearch/date=2024-03-01/x.ndjson"]
    for key in foreign:
        store.put_bytes(key, b"not an export", "text/plain")
    manifests = store.list("manifests")

    dry = run_retention(settings, today=TODAY, dry_run=True)
    assert dry.plan is not None
    planned = [o.key for o in dry.plan.objects]
    # 2024-03-01 fails verification (an object that is not in its manifest) and its chain evidence touches 2024-03-02:
    # both keep their exports, and say why.
    expected = [f"{fmt}/date={day}/audit_logs.{fmt}" for day in DAYS[2:] for fmt in ("csv", "ndjson") if fmt == "csv" or day < D(2024, 3, 3)]
    assert planned == expected
    assert not any("notes" in k or "README" in k for k in planned)
    assert dry.plan.objects_kept[DAYS[0]].startswith("its exports do not verify: unexpected object, not in the manifest: csv/date=2024-03-01/notes/keep.txt")
    assert dry.plan.objects_kept[DAYS[1]].startswith("the previous day, 2024-03-01, does not verify (unexpected object")
    assert [(h.day, h.objects) for h in dry.plan.held] == [(DAYS[0], 2), (DAYS[1], 2)]

    real = run_retention(settings, today=TODAY)
    assert real.figures() == dry.figures()
    assert real.figures().export_objects == {"csv": 3, "ndjson": 0, "parquet": 0}
    assert [o.key for o in real.objects_deleted] == planned
    assert not any(store.exists(k) for k in planned)
    assert all(store.exists(k) for k in foreign)  # outside the daily layout: never touched
    assert all(store.list(f"parquet/date={day}") for day in DAYS)
    assert all(store.list(f"ndjson/date={day}") for day in DAYS)
    assert all(store.list(f"csv/date={day}") for day in DAYS[:2])
    assert set(manifests) <= set(store.list("manifests"))  # manifests stay for verification

    # Every day still verifies: the deleted objects are accounted for by retirement records.
    reports = _verify_all(settings)
    assert reports[DAYS[0]] == ("FAILED", ["unexpected object, not in the manifest: csv/date=2024-03-01/notes/keep.txt"])  # the foreign object
    assert reports[DAYS[1]][0] == "OK" and read_retirement(store, DAYS[0]) is None and read_retirement(store, DAYS[1]) is None
    assert {reports[day][0] for day in DAYS[2:]} == {"RETIRED"}
    retired = read_retirement(store, DAYS[2])
    assert retired is not None and retired.deleted == ("csv/date=2024-03-03/audit_logs.csv",)
    assert retired.reason == "retention: csv 70d (kept from 2024-03-11)"

    assert run_retention(settings, today=TODAY).figures().export_objects == {"csv": 0, "ndjson": 0, "parquet": 0}  # a re-run is a no-op
    # Once the foreign object is gone, the first two days verify and go as well.
    store.delete("csv/date=2024-03-01/notes/keep.txt")
    resolved = run_retention(settings, today=TODAY)
    assert resolved.figures().export_objects == {"csv": 2, "ndjson": 2, "parquet": 0}
    first = read_retirement(store, DAYS[0])
    assert first is not None and first.deleted == ("csv/date=2024-03-01/audit_logs.csv", "ndjson/date=2024-03-01/audit_logs.ndjson")
    assert "csv 70d (kept from 2024-03-11)" in first.reason and "ndjson 78d (kept from 2024-03-03)" in first.reason
    # Days later the NDJSON of the remaining days goes too; the retirement record then names both formats.
    later = run_retention(settings, today=TODAY + dt.timedelta(days=10))
    assert later.figures().export_objects == {"csv": 0, "ndjson": 3, "parquet": 0}
    final = read_retirement(store, DAYS[-1])
    assert final is not None and {k.split("/")[0] for k in final.deleted} == {"csv", "ndjson"}
    assert {r[0] for r in _verify_all(settings).values()} == {"RETIRED"}
    assert sum(rows_per_day(pg).values()) == 15  # export retention never touches the database


def test_rows_and_exports_in_one_run(pg: PgDatabase, tmp_path: Path, store_sections: dict) -> None:
    """Rows are checked against the exports before export retention removes the CSV of the same days."""
    fill_days(pg, DAYS[0], DAYS[-1])
    settings = settings_for(tmp_path, pg, {"database": "70d", "exports": {"csv": "70d", "ndjson": "70d", "parquet": "unlimited"}}, **store_sections)
    export_days(settings, DAYS)
    dry = run_retention(settings, today=TODAY, dry_run=True)
    real = run_retention(settings, today=TODAY)
    assert real.figures() == dry.figures()
    assert real.figures().database_rows == 15 and real.figures().export_objects == {"csv": 5, "ndjson": 5, "parquet": 0}
    assert rows_per_day(pg) == {}
    store = ObjectStore.from_settings(settings.export)
    # What is left (Parquet, manifests, retirement and retention records) still verifies.
    assert {r[0] for d, r in _verify_all(settings).items() if d in DAYS} == {"RETIRED"}
    assert all(store.exists(f"retention/date={day}.json") for day in DAYS)


def test_only_keys_of_the_daily_layout_are_due(tmp_path: Path) -> None:
    store = ObjectStore(str(tmp_path / "exports"))
    keys = [
        "csv/date=2024-03-01/audit_logs.csv",
        "csv/date=2024-03-01/nested/keep.csv",
        "csv/date=2024-02-30/audit_logs.csv",  # not a day
        "csv/2024-03-01/audit_logs.csv",
        "parquet/date=2024-03-01/audit_logs.parquet",
        "manifests/date=2024-03-01.json",
    ]
    for key in keys:
        store.put_bytes(key, b"x", "application/octet-stream")
    due = due_objects(exported_objects(store), {"csv": D(2024, 3, 2), "ndjson": D(2024, 3, 2), "parquet": None})
    assert [o.key for o in due] == ["csv/date=2024-03-01/audit_logs.csv"]


def test_a_daily_summary_goes_with_the_last_of_its_days_exports(pg: PgDatabase, tmp_path: Path) -> None:
    """The summary names actors and countries: it must not outlive every export of its day."""
    fill_days(pg, DAYS[0], DAYS[-1])
    settings = settings_for(tmp_path, pg, {"exports": {"csv": "70d", "ndjson": "70d", "parquet": "78d"}})
    export_days(settings, DAYS)
    store = ObjectStore.from_settings(settings.export)
    orphan, recent = D(2024, 2, 1), D(2024, 5, 1)  # a summary whose exports earlier runs removed; one inside the policy
    for day in [orphan, *DAYS, recent]:
        store.put_bytes(summary_key(day), b'{"top_actors_by_failures": [{"actor_email": "a@example.com"}]}', "application/json")
    store.put_bytes("summary/date=2024-02-01/notes.txt", b"not a summary", "text/plain")

    # On 2024-05-20 CSV and NDJSON go for all five days but Parquet only before 2024-03-03: the summaries of
    # 2024-03-01 and -02 go with it, the other days keep theirs while their Parquet is there.
    dry = run_retention(settings, today=TODAY, dry_run=True)
    assert dry.plan is not None
    assert dry.plan.summaries == [summary_key(orphan), summary_key(DAYS[0]), summary_key(DAYS[1])]
    assert all(store.exists(summary_key(day)) for day in [orphan, *DAYS])  # a dry run deletes nothing
    real = run_retention(settings, today=TODAY)
    assert real.summaries_deleted == dry.plan.summaries and real.figures() == dry.figures()
    assert real.figures().as_dict()["summaries_deleted"] == 3
    assert [day for day in [orphan, *DAYS, recent] if store.exists(summary_key(day))] == [*DAYS[2:], recent]
    assert store.exists("summary/date=2024-02-01/notes.txt")  # not a summary key: never touched
    assert run_retention(settings, today=TODAY).summaries_deleted == []  # a re-run is a no-op

    # Ten days later the rest of the Parquet goes, and the summaries with it; the recent one stays.
    later = run_retention(settings, today=TODAY + dt.timedelta(days=10))
    assert later.summaries_deleted == [summary_key(day) for day in DAYS[2:]]
    assert store.list("summary") == ["summary/date=2024-02-01/notes.txt", summary_key(recent)]


def test_summaries_stay_while_a_format_is_kept_forever(tmp_path: Path) -> None:
    store = ObjectStore(str(tmp_path / "exports"))
    for key in ["csv/date=2024-03-01/audit_logs.csv", "parquet/date=2024-03-01/audit_logs.parquet", summary_key(D(2024, 3, 1))]:
        store.put_bytes(key, b"x", "application/octet-stream")
    cutoffs = {"csv": D(2024, 3, 2), "ndjson": D(2024, 3, 2), "parquet": None}
    listed = exported_objects(store)
    assert due_summaries(store, cutoffs, listed, due_objects(listed, cutoffs)) == []
    assert due_summaries(store, dict.fromkeys(cutoffs), listed, []) == []  # no export policy at all


@pytest.mark.parametrize("kept", ["ndjson", "csv"])
def test_rows_are_matched_by_id_from_whichever_format_is_left(pg: PgDatabase, tmp_path: Path, kept: str) -> None:
    """With Parquet retired, the ids come from NDJSON or CSV (formula protection undone: an id may start with '=')."""
    fill_days(pg, DAYS[0], DAYS[1])
    pg.insert(
        [
            {"id": "=alog_formula", "created_at": dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)},
            {"id": "+alog_plus", "created_at": dt.datetime(2024, 3, 2, 1, tzinfo=dt.UTC)},
        ]
    )
    exports = {fmt: ("unlimited" if fmt == kept else "60d") for fmt in ("csv", "ndjson", "parquet")}
    settings = settings_for(tmp_path, pg, {"database": "70d", "exports": exports})
    export_days(settings, DAYS[:2])
    first = run_retention(settings, today=dt.date(2024, 5, 5))  # exports past 60d go; rows (70d) not yet
    assert first.figures().database_rows == 0 and sum(first.figures().export_objects.values()) == 4
    second = run_retention(settings, today=TODAY)
    assert second.figures().database_rows == 8 and rows_per_day(pg) == {}
    assert second.plan is not None and {d.evidence.id_object.format for d in second.plan.days_to_delete} == {kept}
