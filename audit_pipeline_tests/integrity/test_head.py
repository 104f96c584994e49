"""The head and its witness: exports side by side are not a rollback; deleting the newest days is."""

from __future__ import annotations

from audit_pipeline.integrity.head import HeadWitness, check_head, read_head
from audit_pipeline.integrity.manifest import HEAD_KEY, Head, manifest_key
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.storage import ObjectStore
from audit_pipeline_tests.integrity.support import DAYS, insert_days, new_signer, seal_days

D1, D2, D3 = DAYS


def test_heads_written_out_of_order_are_a_note_and_deleted_days_a_failure(pg, tmp_path) -> None:
    insert_days(pg, {D1: 120, D2: 120, D3: 120})
    store = ObjectStore(str(tmp_path / "exports"))
    signer = new_signer()
    seal_days(pg, store, DAYS[:2], signer=signer)
    stale = store.read_bytes(HEAD_KEY)  # names D2
    seal_days(pg, store, DAYS[2:], signer=signer)
    head, _ = read_head(store)
    assert head is not None and head.day == D3 and head.signed_from == D1
    witness = HeadWitness(f"sqlite:///{tmp_path / 'state.db'}")
    witness.record(store, head)
    witness.record(store, Head.from_bytes(stale))  # a slower export side by side records its older head last
    seen = witness.seen(store)
    assert seen is not None and (seen.day, seen.counter) == (D3, head.counter)
    keyring = Keyring(pinned={signer.key_id: signer.public_key}, require_signature=True)

    # The slower export also wrote its head last: behind, not tampered with.
    store.put_bytes(HEAD_KEY, stale, "application/json")
    behind = check_head(store, keyring, D3, seen)
    assert behind.ok and any(f"manifests up to {D3} are newer than the head" in n for n in behind.notes)

    # D3 deleted, and the store's head names D2: only the witness can tell.
    store.delete(manifest_key(D3))
    rolled = check_head(store, keyring, D2, seen)
    assert rolled.problems == [
        f"{HEAD_KEY} was rolled back: it is update {Head.from_bytes(stale).counter} naming {D2}, but the exports wrote update {head.counter} "
        f"naming {D3}, and the newest manifest is {D2}: an older head was put back after the newest days were deleted"
    ]
    assert check_head(store, keyring, D2).ok  # without the witness, a consistent rollback cannot be seen
    witness.close()
