"""The head and its witness: exports side by side are not a rollback; deleting the newest days is, in the store or in a copy of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.config.settings import load_settings
from audit_pipeline.core.layout import HEAD_KEY, manifest_key
from audit_pipeline.exports.day import export_day
from audit_pipeline.integrity.head import HeadWitness, check_head, read_head, witness_table
from audit_pipeline.integrity.manifest import Head
from audit_pipeline.integrity.sealing import DaySealer
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.sources.registry import open_source
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.integrity.support import DAYS, copy_tree, insert_days, new_signer, seal_days, write_private_key

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


def _settings_file(path: Path, pg, export_url: Path, state: Path, key: Path) -> Path:
    config = {
        "source": {"database_url": pg.readonly_url},
        "export": {"url": str(export_url)},
        "state_url": f"sqlite:///{state}",
        "integrity": {"private_key_file": str(key), "checkpoint_rows": 100},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _export(config: Path, days) -> None:
    settings = load_settings(config)
    store = ObjectStore.from_settings(settings.export)
    with open_source(settings) as source:
        for day in days:
            sealer = DaySealer.from_settings(settings, store, day)  # the head witness comes from state_url, as in every export
            export_day(source, store, day, settings.export, **sealer.export_hooks())
            sealer.after_publish()


def _roll_back(root: Path, head: bytes) -> None:
    """What an attacker does: delete the newest day and put back an older, validly signed head naming the day before."""
    for path in sorted(root.rglob(f"*date={D3}*"), reverse=True):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (root / HEAD_KEY).write_bytes(head)


def test_a_store_copied_to_another_folder_keeps_its_rollback_detection(pg, tmp_path, workdir) -> None:
    insert_days(pg, {D1: 60, D2: 60, D3: 60})
    key = write_private_key(new_signer(), tmp_path / "manifest.pem")
    state = tmp_path / "state.db"
    original = _settings_file(tmp_path / "original.yaml", pg, tmp_path / "exports", state, key)
    _export(original, DAYS[:2])
    older_head = (tmp_path / "exports" / HEAD_KEY).read_bytes()  # names D2
    _export(original, DAYS[2:])

    copy = copy_tree(tmp_path / "exports", tmp_path / "moved" / "exports")
    _roll_back(copy, older_head)
    verified = CliRunner().invoke(main, ["--config", str(_settings_file(tmp_path / "moved.yaml", pg, copy, state, key)), "verify"])
    assert verified.exit_code == 1, verified.output
    assert f"HEAD FAILED: {HEAD_KEY} was rolled back: it is update 2 naming {D2}, but the exports wrote update 3 naming {D3}" in verified.output
    # The original, under its own URL, is untouched and verifies.
    assert CliRunner().invoke(main, ["--config", str(original), "verify"]).exit_code == 0


def test_a_witness_recorded_under_the_url_alone_is_still_read_and_follows_a_later_copy(pg, tmp_path, workdir) -> None:
    insert_days(pg, {D1: 60, D2: 60, D3: 60})
    key = write_private_key(new_signer(), tmp_path / "manifest.pem")
    state = tmp_path / "state.db"
    original = _settings_file(tmp_path / "original.yaml", pg, tmp_path / "exports", state, key)
    _export(original, DAYS[:2])
    older_head = (tmp_path / "exports" / HEAD_KEY).read_bytes()
    _export(original, DAYS[2:])
    # As an earlier release left it: one row, named by the store's URL.
    engine = sa.create_engine(f"sqlite:///{state}")
    with engine.begin() as conn:
        conn.execute(witness_table.delete().where(witness_table.c.store != ObjectStore(str(tmp_path / "exports")).uri("")))
        assert conn.execute(sa.select(sa.func.count()).select_from(witness_table)).scalar() == 1
    engine.dispose()
    witness = HeadWitness(f"sqlite:///{state}")
    seen = witness.seen(ObjectStore(str(tmp_path / "exports")))  # read under the URL, and recorded under the genesis
    witness.close()
    assert seen is not None and (seen.day, seen.counter) == (D3, 3)

    copy = copy_tree(tmp_path / "exports", tmp_path / "moved")
    _roll_back(copy, older_head)
    verified = CliRunner().invoke(main, ["--config", str(_settings_file(tmp_path / "moved.yaml", pg, copy, state, key)), "verify"])
    assert verified.exit_code == 1 and f"{HEAD_KEY} was rolled back" in verified.output, verified.output
