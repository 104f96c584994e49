"""Retention and verify: days retired with a record stay verifiable; silent deletions do not."""

from __future__ import annotations

import pytest

from audit_pipeline.core.errors import AuditPipelineError
from audit_pipeline.core.layout import manifest_key
from audit_pipeline.integrity.manifest import Manifest
from audit_pipeline.integrity.retirement import read_retirement, record_retirement
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.integrity.support import DAYS, insert_days, messages, new_signer, seal, seal_days, verify

D1, D2, D3 = DAYS


@pytest.fixture
def sealed(pg, tmp_path):
    insert_days(pg, {D1: 80, D2: 70, D3: 60})
    root = tmp_path / "x"
    signer = new_signer()
    seal_days(pg, ObjectStore(str(root)), signer=signer)
    return root, ObjectStore(str(root)), signer


def _retire(store, signer, day, *, drop_manifest=False):
    manifest = Manifest.from_bytes(store.read_bytes(manifest_key(day)))
    keys = [o.key for o in manifest.objects]
    record_retirement(store, day, keys, "retention: 90 days", signer)  # first the record ...
    for key in keys:  # ... then the deletions
        store.delete(key)
    if drop_manifest:
        store.delete(manifest_key(day))


def test_retired_days_verify_and_the_rest_still_links(sealed):
    _root, store, signer = sealed
    _retire(store, signer, D1)
    keyring = Keyring(pinned={signer.key_id: signer.public_key}, require_signature=True)
    reports = verify(store, keyring)
    assert reports[D1].status == "RETIRED" and reports[D1].ok
    assert any("deleted by retention (retention: 90 days)" in note for note in reports[D1].notes)
    assert reports[D2].ok and reports[D3].ok
    record = read_retirement(store, D1)
    assert record is not None and record.signature is not None and record.rows == 80


def test_retired_manifest_removed_too(sealed):
    _root, store, signer = sealed
    _retire(store, signer, D1, drop_manifest=True)
    _retire(store, signer, D2, drop_manifest=True)
    reports = verify(store, Keyring(pinned={signer.key_id: signer.public_key}))
    assert [reports[d].status for d in DAYS] == ["RETIRED", "RETIRED", "OK"]
    # D3 still links: to the retirement record's copy of D2's manifest hash and last hash.
    assert reports[D3].ok, messages(reports[D3])
    # A day whose manifest is already gone cannot be retired (again).
    with pytest.raises(AuditPipelineError, match=f"{D1} has no manifest"):
        record_retirement(store, D1, [], "again", signer)


def test_objects_deleted_without_a_record_are_reported(sealed):
    _root, store, _signer = sealed
    for key in store.list(f"csv/date={D1}"):
        store.delete(key)
    assert messages(verify(store)[D1]) == f"object missing: csv/date={D1}/audit_logs.csv"


def test_early_days_pruned_entirely_start_the_verifiable_range(sealed):
    _root, store, _signer = sealed
    for key in [*store.list(f"csv/date={D1}"), *store.list(f"ndjson/date={D1}"), *store.list(f"parquet/date={D1}"), manifest_key(D1)]:
        store.delete(key)
    reports = verify(store)
    assert list(reports) == [D2, D3]
    assert reports[D2].ok and f"start of the verifiable range: linked to {D1}, which is no longer in the store" in reports[D2].notes


def test_retirement_names_only_manifest_objects(sealed):
    _root, store, signer = sealed
    with pytest.raises(AuditPipelineError, match="are not objects of its manifest"):
        record_retirement(store, D2, ["csv/date=2020-01-01/audit_logs.csv"], "oops", signer)


def test_export_after_a_retired_day_continues_from_its_record(pg, sealed):
    _root, store, signer = sealed
    _retire(store, signer, D3, drop_manifest=True)
    later = D3.replace(day=D3.day + 1)
    insert_days(pg, {later: 30})
    with PostgresSource(pg.readonly_url) as source:
        seal(source, store, later, signer=signer)
    report = verify(store, Keyring(pinned={signer.key_id: signer.public_key}))[later]
    assert report.ok, messages(report)
    record = read_retirement(store, D3)
    assert record is not None and Manifest.from_bytes(store.read_bytes(manifest_key(later))).chain.seed == record.last_hash
