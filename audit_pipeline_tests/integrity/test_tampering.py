"""Verify on tampered exports: each kind of tampering is named, with its day and the first bad event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.core.layout import manifest_key
from audit_pipeline.integrity.manifest import Manifest
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.integrity.support import DAYS, ROWS, copy_tree, insert_days, messages, new_signer, seal_days, verify, write_public_key

D1, D2, D3 = DAYS


@pytest.fixture(scope="module")
def pristine(pg_session_db, tmp_path_factory):
    """Three signed days exported from PostgreSQL once; each test tampers with its own copy."""
    pg_session_db.reset()
    insert_days(pg_session_db)
    signer = new_signer()
    root = tmp_path_factory.mktemp("pristine") / "exports"
    seal_days(pg_session_db, ObjectStore(str(root)), signer=signer)
    pg_session_db.reset()
    return root, signer


@pytest.fixture
def exports(pristine, tmp_path):
    root, signer = pristine
    return copy_tree(root, tmp_path / "exports"), signer


def _keyring(signer) -> Keyring:
    return Keyring(pinned={signer.key_id: signer.public_key}, require_signature=True)


def _rewrite_lines(path: Path, edit) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(edit(lines)))


def test_untouched_exports_verify(exports):
    root, signer = exports
    reports = verify(ObjectStore(str(root)), _keyring(signer))
    assert list(reports) == list(DAYS)
    for day, report in reports.items():
        assert report.ok, messages(report)
        assert report.rows == ROWS[day]
        assert any("Ed25519" in note for note in report.notes)
    assert "start of the chain" in reports[D1].notes


def test_one_byte_of_a_csv(exports):
    root, signer = exports
    path = root / f"csv/date={D2}/audit_logs.csv"
    data = bytearray(path.read_bytes())
    line_42 = sum(len(line) for line in bytes(data).splitlines(keepends=True)[:42])  # header + 41 events before it
    position = line_42 + 6  # inside the id of event 42
    data[position] = ord("Z") if data[position] != ord("Z") else ord("Y")
    path.write_bytes(bytes(data))
    reports = verify(ObjectStore(str(root)), _keyring(signer))
    text = messages(reports[D2])
    assert f"object modified: csv/date={D2}/audit_logs.csv" in text
    assert f"csv/date={D2}/audit_logs.csv: events altered: the recomputed chain differs from event 42 on" in text
    assert len(reports[D2].problems) == 2
    assert reports[D1].ok and reports[D3].ok


def test_parquet_deleted(exports):
    root, signer = exports
    (root / f"parquet/date={D3}/audit_logs.parquet").unlink()
    reports = verify(ObjectStore(str(root)), _keyring(signer))
    assert messages(reports[D3]) == f"object missing: parquet/date={D3}/audit_logs.parquet"
    assert reports[D1].ok and reports[D2].ok


def test_manifest_removed(exports):
    root, signer = exports
    (root / manifest_key(D2)).unlink()
    reports = verify(ObjectStore(str(root)), _keyring(signer))
    assert messages(reports[D2]).startswith(f"manifest missing: manifests/date={D2}.json (a gap in the chain); objects without a manifest: csv/date={D2}/")
    assert messages(reports[D3]) == f"manifest missing for {D2}: a gap in the chain before this day"
    assert reports[D1].ok


def test_two_ndjson_lines_swapped(exports):
    root, signer = exports
    path = root / f"ndjson/date={D1}/audit_logs.ndjson"
    _rewrite_lines(path, lambda lines: [*lines[:9], lines[10], lines[9], *lines[11:]])
    reports = verify(ObjectStore(str(root)), _keyring(signer))
    text = messages(reports[D1])
    assert f"object modified: ndjson/date={D1}/audit_logs.ndjson" in text
    assert (
        f"ndjson/date={D1}/audit_logs.ndjson: events reordered: the recomputed chain differs from event 10 on; event 11 is out of (created_at, id) order"
        in text
    )
    assert reports[D2].ok and reports[D3].ok


def test_manifest_row_count_altered(exports):
    root, signer = exports
    path = root / manifest_key(D2)
    document = json.loads(path.read_text())
    document["rows"] -= 1
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    reports = verify(ObjectStore(str(root)), _keyring(signer))
    text = messages(reports[D2])
    assert f"manifest altered or signature invalid: manifests/date={D2}.json: signature invalid (Ed25519 key {signer.key_id})" in text
    assert f"manifest altered: it says {ROWS[D2] - 1} events but {ROWS[D2]} for csv/date={D2}/audit_logs.csv" in text
    # The next day recorded the manifest's SHA-256, so it notices too.
    assert f"manifests/date={D2}.json changed after this day was sealed" in messages(reports[D3])
    assert reports[D1].ok


def test_manifest_row_count_altered_without_signatures(pg_session_db, tmp_path):
    pg_session_db.reset()
    insert_days(pg_session_db, {D1: 120, D2: 80})
    root = tmp_path / "exports"
    seal_days(pg_session_db, ObjectStore(str(root)), days=(D1, D2))
    path = root / manifest_key(D1)
    document = json.loads(path.read_text())
    document["rows"] = 119
    document["objects"] = [{**o, "rows": 119} for o in document["objects"]]
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    reports = verify(ObjectStore(str(root)))
    assert f"manifest altered: it says 119 events, but csv/date={D1}/audit_logs.csv (intact) holds 120" in messages(reports[D1])
    assert f"manifests/date={D1}.json changed after this day was sealed" in messages(reports[D2])
    pg_session_db.reset()


def test_manifest_signed_with_another_key(exports):
    root, signer = exports
    store = ObjectStore(str(root))
    forged = Manifest.from_bytes((root / manifest_key(D2)).read_bytes())
    intruder = new_signer()
    unsigned = forged.model_copy(update={"signature": None})
    (root / manifest_key(D2)).write_bytes(unsigned.model_copy(update={"signature": intruder.sign(unsigned)}).to_bytes())
    pinned = verify(store, _keyring(signer))
    assert f"signed by Ed25519 key {intruder.key_id}, which is not a trusted key ({signer.key_id})" in messages(pinned[D2])
    assert pinned[D1].ok
    # Without --public-key the store's published keys are used: the intruder's key is not among them.
    unpinned = verify(store)
    assert f"signed by Ed25519 key {intruder.key_id}, but manifests/public_keys/{intruder.key_id}.pem is not in the store" in messages(unpinned[D2])
    assert unpinned[D1].ok and any("not pinned" in note for note in unpinned[D1].notes)


def test_event_inserted_and_event_deleted(exports):
    root, signer = exports
    _rewrite_lines(root / f"ndjson/date={D3}/audit_logs.ndjson", lambda lines: [*lines[:5], lines[4], *lines[5:]])
    _rewrite_lines(root / f"csv/date={D1}/audit_logs.csv", lambda lines: [*lines[:100], *lines[101:]])  # header + 99 events kept
    reports = verify(ObjectStore(str(root)), _keyring(signer))
    assert (
        f"ndjson/date={D3}/audit_logs.ndjson: events inserted: the recomputed chain differs from event 6 on ({ROWS[D3] + 1} events, the manifest says {ROWS[D3]})"
        in messages(reports[D3])
    )
    assert (
        f"csv/date={D1}/audit_logs.csv: events deleted: the recomputed chain differs from event 100 on ({ROWS[D1] - 1} events, the manifest says {ROWS[D1]})"
        in messages(reports[D1])
    )
    assert reports[D2].ok


def test_without_an_intact_copy_the_bad_event_is_narrowed_to_a_checkpoint_interval(exports):
    root, signer = exports
    (root / f"csv/date={D2}/audit_logs.csv").unlink()
    (root / f"parquet/date={D2}/audit_logs.parquet").unlink()
    _rewrite_lines(root / f"ndjson/date={D2}/audit_logs.ndjson", lambda lines: [*lines[:250], lines[250].replace(b"success", b"failure"), *lines[251:]])
    reports = verify(ObjectStore(str(root)), _keyring(signer))
    text = messages(reports[D2])
    assert "the recomputed chain differs from an event in 201–300 on" in text  # checkpoints every 100 events
    assert f"object missing: csv/date={D2}/audit_logs.csv" in text


def test_unexpected_object_in_a_day(exports):
    root, signer = exports
    (root / f"csv/date={D2}/audit_logs_extra.csv").write_bytes(b"id\r\n")
    reports = verify(ObjectStore(str(root)), _keyring(signer))
    assert messages(reports[D2]) == f"unexpected object, not in the manifest: csv/date={D2}/audit_logs_extra.csv"


def test_verify_command_exit_codes_and_report(exports, workdir, monkeypatch):
    root, signer = exports
    monkeypatch.setenv("AUDIT_EXPORT_URL", str(root))
    public = write_public_key(signer, workdir / "manifest_public.pem")
    ok = CliRunner().invoke(main, ["verify", "--public-key", str(public)])
    assert ok.exit_code == 0, ok.output
    assert f"{D1}  OK      {ROWS[D1]} events" in ok.output
    assert "3 OK, 0 retired, 0 failed, of 3 days" in ok.output
    (root / f"parquet/date={D3}/audit_logs.parquet").unlink()
    failed = CliRunner().invoke(main, ["verify", "--public-key", str(public)])
    assert failed.exit_code == 1
    assert f"{D3}  FAILED" in failed.output and f"object missing: parquet/date={D3}/audit_logs.parquet" in failed.output
    only = CliRunner().invoke(main, ["verify", "--from", str(D1), "--to", str(D2), "--public-key", str(public)])
    assert only.exit_code == 0 and str(D3) not in only.output
    bad = CliRunner().invoke(main, ["verify", "--from", "March"])
    assert bad.exit_code == 2 and "--from must be a day as YYYY-MM-DD" in bad.output
