"""``verify`` checks the transparency log: every daily checkpoint signed and extended by the next; rollbacks and forks fail."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.integrity.checkpoint import sign_checkpoint
from audit_pipeline.integrity.merkle import leaf_hash
from audit_pipeline.integrity.proofs import CHECKPOINT_KEY, LOG_PREFIX, day_checkpoint_key
from audit_pipeline.integrity.tiles import TileReader, TileWriter
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.integrity.support import DAYS, ROWS, configure_signed_log, export_as_configured, insert_days, new_signer

D1, D2, D3 = DAYS


@pytest.fixture
def sealed(pg, workdir):
    """Three days exported with the log, signed with the configured key."""
    insert_days(pg, ROWS)
    signer = new_signer()
    root = configure_signed_log(workdir, pg, signer)
    export_as_configured(DAYS)
    store = ObjectStore(str(root))
    return {"root": root, "store": store, "signer": signer, "origin": (root / CHECKPOINT_KEY).read_text().split("\n")[0]}


def _verify():
    result = CliRunner().invoke(main, ["verify"])
    log_lines = [line for line in result.output.splitlines() if line.startswith(("log:", "LOG FAILED"))]
    return result.exit_code, log_lines


def _lines(root, day) -> list[bytes]:
    return (root / f"ndjson/date={day}/audit_logs.ndjson").read_bytes().splitlines(keepends=True)


def _forge(root, events: list[bytes], signer, origin: str) -> str:
    """Replace the tiles with the tree of ``events``; its checkpoint, signed by ``signer``."""
    shutil.rmtree(root / "tlog/tile")
    store = ObjectStore(str(root))
    writer = TileWriter(TileReader(store, LOG_PREFIX, 0), lambda key, data: store.put_bytes(key, data, "application/octet-stream"))
    writer.append(b"".join(leaf_hash(e) for e in events))
    return sign_checkpoint(origin, writer.size, writer.finish(), signer)


def test_a_healthy_log_is_reported_with_its_checkpoints(sealed):
    code, lines = _verify()
    assert code == 0 and lines == ["log: 3 daily checkpoints, each extended by the next, tree of 2100 entries (signed with a trusted key)"]


def test_a_rolled_back_checkpoint_fails(sealed):
    root = sealed["root"]
    (root / CHECKPOINT_KEY).write_text((root / day_checkpoint_key(D1)).read_text())  # an older, correctly signed checkpoint
    code, lines = _verify()
    assert code == 1
    assert lines == ["LOG FAILED: the log was rolled back: tlog/checkpoint has 700 entries but the checkpoint of 2024-03-03 has 2100"]


def test_a_rewritten_history_re_signed_with_the_real_key_fails_against_the_daily_checkpoints(sealed):
    # An insider with the key changes one event of the first day and re-signs the newest checkpoint: the
    # daily checkpoints published before are no prefix of the new tree.
    root, signer = sealed["root"], sealed["signer"]
    events = [line for day in DAYS for line in _lines(root, day)]
    events[5] = events[5].replace(b'{"id":"', b'{"id":"x', 1)
    (root / CHECKPOINT_KEY).write_text(_forge(root, events, signer, sealed["origin"]))
    code, lines = _verify()
    assert code == 1
    assert lines[0].startswith("LOG FAILED: the checkpoint of 2024-03-02 (1600 entries) does not extend the checkpoint of 2024-03-01 (700 entries):"), lines
    assert "not a prefix" in lines[0] or "does not lead" in lines[0]


def test_a_forked_log_with_the_same_size_fails(sealed):
    root, signer = sealed["root"], sealed["signer"]
    events = [line for day in DAYS for line in _lines(root, day)]
    forged = _forge(root, [*events[:700], *reversed(events[700:])], signer, sealed["origin"])
    (root / CHECKPOINT_KEY).write_text(forged)
    (root / day_checkpoint_key(D2)).write_text(forged)  # same size as D3's checkpoint, another root
    code, lines = _verify()
    assert code == 1 and any("the log was forked: " in line and "2100 entries but different roots" in line for line in lines), lines


def test_a_consistent_forged_tree_signed_by_another_key_fails(sealed):
    root = sealed["root"]
    other = new_signer()
    forged = _forge(root, [b'{"id":"forged"}\n'] * 3000, other, sealed["origin"])
    for key in (CHECKPOINT_KEY, *(day_checkpoint_key(d) for d in DAYS)):
        (root / key).write_text(forged)
    code, lines = _verify()
    assert code == 1 and len(lines) == 4, lines
    assert lines[0].startswith("LOG FAILED: the newest checkpoint (tlog/checkpoint) is not signed by a trusted key: ")


def test_a_changed_tile_under_a_checkpoint_fails(sealed):
    root = sealed["root"]
    tile = root / "tlog/tile/0/002"  # leaves 512..767: the first day's last ones and the second day's first
    data = bytearray(tile.read_bytes())
    data[(600 - 512) * 32] ^= 1
    tile.write_bytes(bytes(data))
    code, lines = _verify()
    assert code == 1 and lines[0].startswith("LOG FAILED: "), lines
    assert "does not extend" in lines[0] or "tiles do not lead to the root" in lines[0]
