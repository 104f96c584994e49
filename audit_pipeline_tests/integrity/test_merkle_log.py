"""The transparency log of sealed days: tiles and checkpoints in the store, ``prove`` bundles, ``verify-proof`` offline."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil

import pytest
import yaml
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.config.settings import load_settings
from audit_pipeline.exports.day import export_day
from audit_pipeline.integrity.checkpoint import sign_checkpoint
from audit_pipeline.integrity.merkle import MemoryTree, leaf_hash
from audit_pipeline.integrity.proof_verify import ProofError, verify_checkpoint
from audit_pipeline.integrity.proofs import CHECKPOINT_KEY, LOG_PREFIX, day_checkpoint_key, read_record
from audit_pipeline.integrity.sealing import DaySealer
from audit_pipeline.integrity.tiles import TileReader, encode_index, tile_key
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.integrity.support import DAYS, ROWS, insert_days, new_signer, write_private_key, write_public_key

D1, D2, D3 = DAYS


def test_tile_index_encoding_follows_tlog_tiles() -> None:
    assert encode_index(0) == "000"
    assert encode_index(67) == "067"
    assert encode_index(1234067) == "x001/x234/067"
    assert tile_key("tlog", 0, 1234067) == "tlog/tile/0/x001/x234/067"
    assert tile_key("tlog", 1, 3, 17) == "tlog/tile/1/003.p/17"


@pytest.fixture
def log_env(pg, workdir):
    insert_days(pg, ROWS)
    signer = new_signer()
    root = workdir / "exports"
    key = write_private_key(signer, workdir / "key.pem")
    public = write_public_key(signer, workdir / "public.pem")
    (workdir / "audit_pipeline.yaml").write_text(
        yaml.safe_dump({"source": {"database_url": pg.readonly_url}, "export": {"url": str(root)}, "integrity": {"private_key_file": str(key)}})
    )
    return {"root": root, "signer": signer, "public": public, "workdir": workdir}


def _export(days) -> list[str]:
    settings = load_settings()
    store = ObjectStore.from_settings(settings.export)
    lines = []
    with PostgresSource(settings.source.database_url.get_secret_value(), batch_rows=300) as source:
        for day in days:
            sealer = DaySealer.from_settings(settings, store, day)
            export_day(source, store, day, settings.export, **sealer.export_hooks())
            lines.append(sealer.after_publish())
    return lines


def _ndjson_lines(root, day) -> list[bytes]:
    return (root / f"ndjson/date={day}/audit_logs.ndjson").read_bytes().splitlines(keepends=True)


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_sealed_days_make_one_tree_of_every_event_in_tiles_with_signed_checkpoints(log_env):
    root, signer = log_env["root"], log_env["signer"]
    summaries = _export(DAYS)
    assert "appended as entries 0..699" in summaries[0] and "checkpoint 2100" in summaries[2]
    events = [line for day in DAYS for line in _ndjson_lines(root, day)]
    expected = MemoryTree(events)
    store = ObjectStore(str(root))
    # 2,100 leaves: 8 full level-0 tiles, a partial one of 52, and a level-1 tile of 8.
    assert (root / "tlog/tile/0/007").stat().st_size == 8192
    assert (root / "tlog/tile/0/008.p/52").stat().st_size == 52 * 32
    assert (root / "tlog/tile/1/000.p/8").exists()
    reader = TileReader(store, LOG_PREFIX, 2100)
    assert reader.node(0, 1234) == leaf_hash(events[1234])
    latest = verify_checkpoint((root / CHECKPOINT_KEY).read_text(), signer.public_key)
    assert (latest.size, latest.root) == (2100, expected.root())
    first = verify_checkpoint((root / day_checkpoint_key(D1)).read_text(), signer.public_key)
    assert (first.size, first.root) == (700, expected.root(700))
    record = read_record(store, D2)
    assert record is not None and (record.first, record.size, record.rows) == (700, 1600, 900)

    # A re-run of a day rewrites nothing: same tiles, same checkpoint.
    before = {p: p.read_bytes() for p in (root / "tlog").rglob("*") if p.is_file()}
    again = _export([D2])
    assert "already holds entries 700..1599" in again[0]
    assert {p: p.read_bytes() for p in (root / "tlog").rglob("*") if p.is_file()} == before


def test_prove_and_verify_proof_offline_and_every_tampering_fails_in_one_line(log_env):
    root, public, workdir = log_env["root"], log_env["public"], log_env["workdir"]
    _export(DAYS)
    event = json.loads(_ndjson_lines(root, D1)[123])
    made = _run("prove", event["id"], "--day", str(D1), "-o", str(workdir / "bundle.json"))
    assert made.exit_code == 0, made.output
    bundle_path = workdir / "bundle.json"
    bundle = json.loads(bundle_path.read_text())
    assert bundle["leaf_index"] == 123 and json.loads(bundle["event"]) == event
    assert bundle_path.stat().st_size < 6000
    # Without --day the days are searched.
    assert json.loads(_run("prove", event["id"]).output)["leaf_index"] == 123

    # Offline: the archive and the configuration are gone.
    shutil.rmtree(root)
    (workdir / "audit_pipeline.yaml").unlink()
    ok = _run("verify-proof", str(bundle_path), "--public-key", str(public))
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith(f"OK: event {event['id']} is entry 123")

    def fails(changed: dict, *extra: str) -> str:
        path = workdir / "tampered.json"
        path.write_text(json.dumps(changed))
        result = _run("verify-proof", str(path), "--public-key", str(public), *extra)
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("FAILED: "), result.output
        return lines[0]

    assert "does not lead to the root" in fails({**bundle, "event": bundle["event"].replace(event["id"], event["id"][:-1] + "0")})
    path = list(bundle["inclusion_path"])
    path[2] = base64.b64encode(bytes(32)).decode()
    assert "does not lead to the root" in fails({**bundle, "inclusion_path": path})
    assert "does not lead to the root" in fails({**bundle, "leaf_index": 124})
    lines = bundle["checkpoint"].split("\n")
    lines[1] = str(int(lines[1]) + 1)
    assert "does not verify" in fails({**bundle, "checkpoint": "\n".join(lines)})

    # A consistent forged tree signed by another key, published under the same origin.
    other = new_signer()
    origin = bundle["checkpoint"].split("\n")[0]
    forged_tree = MemoryTree([bundle["event"].encode()])
    forged = sign_checkpoint(origin, 1, forged_tree.root(), other)
    assert "not signed by this public key" in fails(
        {**bundle, "leaf_index": 0, "inclusion_path": [], "checkpoint": forged, "latest_checkpoint": forged, "consistency_path": []}
    )

    # A rolled-back log: the auditor holds a checkpoint bigger than the bundle's newest.
    rolled_back = dict(bundle)
    rolled_back["latest_checkpoint"] = bundle["checkpoint"]
    rolled_back["consistency_path"] = []
    (workdir / "held.txt").write_text(bundle["latest_checkpoint"])
    assert "rolled back" in fails(rolled_back, "--known-checkpoint", str(workdir / "held.txt"))


def test_consistency_between_daily_checkpoints_and_a_rewritten_log(log_env):
    root, public, workdir, signer = log_env["root"], log_env["public"], log_env["workdir"], log_env["signer"]
    _export([D1])
    held = workdir / "checkpoint-d1.txt"
    held.write_text((root / CHECKPOINT_KEY).read_text())
    _export([D2, D3])
    made = _run("prove", "--consistency", str(held), "-o", str(workdir / "consistency.json"))
    assert made.exit_code == 0, made.output
    ok = _run("verify-proof", str(workdir / "consistency.json"), "--public-key", str(public))
    assert ok.exit_code == 0 and "extends its checkpoint of 700 entries" in ok.output, ok.output

    # Someone rewrites the log from scratch with other first events, correctly signed with the real key:
    # the held checkpoint is then not a prefix of the new tree.
    shutil.rmtree(root / "tlog")
    forged_events = [*_ndjson_lines(root, D2), *_ndjson_lines(root, D1), *_ndjson_lines(root, D3)]
    forged = MemoryTree(forged_events)
    note = sign_checkpoint(held.read_text().split("\n")[0], forged.size, forged.root(), signer)
    bundle = json.loads((workdir / "consistency.json").read_text())
    from audit_pipeline.integrity.merkle import consistency_path

    bundle["checkpoint"] = note
    bundle["consistency_path"] = [base64.b64encode(h).decode() for h in consistency_path(forged, 700, forged.size)]
    (workdir / "rewritten.json").write_text(json.dumps(bundle))
    bad = _run("verify-proof", str(workdir / "rewritten.json"), "--public-key", str(public))
    assert bad.exit_code == 1 and "not a prefix" in bad.output, bad.output


def test_prove_errors_are_one_line(log_env):
    _export([D1])
    missing = _run("prove", "no-such-event", "--day", str(D1))
    assert missing.exit_code == 1 and missing.output.strip().count("\n") == 0
    assert "event no-such-event is not in the export of 2024-03-01" in missing.output
    both = _run("prove")
    assert both.exit_code == 2 and "give either EVENT_ID or --consistency" in both.output
    with pytest.raises(ProofError):
        verify_checkpoint("not a note", log_env["signer"].public_key)


def test_days_sealed_out_of_order_are_appended_in_sealing_order(log_env):
    root = log_env["root"]
    _export([D3, D1])
    store = ObjectStore(str(root))
    r3, r1 = read_record(store, D3), read_record(store, D1)
    assert r3 is not None and r1 is not None
    assert (r3.first, r3.size, r1.first, r1.size) == (0, 500, 500, 1200)
    events = [*_ndjson_lines(root, D3), *_ndjson_lines(root, D1)]
    assert verify_checkpoint((root / CHECKPOINT_KEY).read_text(), log_env["signer"].public_key).root == MemoryTree(events).root()
    assert dt.date.fromisoformat(r1.day) == D1
