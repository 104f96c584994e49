"""Pruning the log after retention deleted the oldest day: old bundles still verify, proofs from the kept days still work."""

from __future__ import annotations

import json

from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.integrity.log_prune import prune_to_exports
from audit_pipeline.integrity.proofs import MINIMUM_KEY, day_checkpoint_key, minimum_index
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.integrity.support import DAYS, ROWS, configure_signed_log, export_as_configured, insert_days, new_signer, write_public_key

D1, D2, D3 = DAYS


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_after_the_oldest_day_is_deleted_old_bundles_and_consistency_from_the_kept_days_verify(pg, workdir):
    insert_days(pg, ROWS)  # 700, 900, 500 events: leaves 0..699 are the first day's
    signer = new_signer()
    root = configure_signed_log(workdir, pg, signer)
    public = str(write_public_key(signer, workdir / "public.pem"))
    export_as_configured(DAYS)
    store = ObjectStore(str(root))
    first_day_event = json.loads((root / f"ndjson/date={D1}/audit_logs.ndjson").read_text().splitlines()[3])["id"]
    assert _run("prove", first_day_event, "-o", str(workdir / "old.json")).exit_code == 0
    assert prune_to_exports(store) is None  # every day still exported: nothing to prune

    # Retention deletes the first day's exports; the log is then served from the second day's first leaf.
    for fmt, name in (("csv", "audit_logs.csv"), ("ndjson", "audit_logs.ndjson"), ("parquet", "audit_logs.parquet")):
        store.delete(f"{fmt}/date={D1}/{name}")
    line = prune_to_exports(store)
    assert line == f"log: served from entry 700 on (days from {D2}); 2 leaf tiles before it deleted, upper tiles and checkpoints kept"
    assert minimum_index(store) == 700 and (root / MINIMUM_KEY).exists()
    assert not (root / "tlog/tile/0/000").exists() and not (root / "tlog/tile/0/001").exists()
    assert (root / "tlog/tile/0/002").exists() and (root / "tlog/tile/1/000.p/8").exists()
    assert prune_to_exports(store) is None  # nothing more to do

    # A bundle made before still verifies, offline.
    ok = _run("verify-proof", str(workdir / "old.json"), "--public-key", public)
    assert ok.exit_code == 0 and ok.output.startswith(f"OK: event {first_day_event} is entry 3"), ok.output
    # Consistency from the oldest kept day's checkpoint, and from the last pruned one, to today.
    for day in (D2, D1):
        (workdir / "held.txt").write_text((root / day_checkpoint_key(day)).read_text())
        made = _run("prove", "--consistency", str(workdir / "held.txt"), "-o", str(workdir / "consistency.json"))
        assert made.exit_code == 0, made.output
        checked = _run("verify-proof", str(workdir / "consistency.json"), "--public-key", public)
        assert checked.exit_code == 0 and "of 2100 entries extends its checkpoint" in checked.output, checked.output
    # New proofs for the kept days' events.
    kept_event = json.loads((root / f"ndjson/date={D2}/audit_logs.ndjson").read_text().splitlines()[0])["id"]
    assert _run("prove", kept_event, "-o", str(workdir / "new.json")).exit_code == 0
    assert _run("verify-proof", str(workdir / "new.json"), "--public-key", public).exit_code == 0
    # verify's log check still passes: every checkpoint from the minimum index on is extended by the next.
    report = _run("verify")
    assert "log: 3 daily checkpoints, each extended by the next, tree of 2100 entries (signed with a trusted key)" in report.output, report.output
    assert "LOG FAILED" not in report.output

    # The second day goes too: the first day's checkpoint is then before the minimum index.
    for fmt, name in (("csv", "audit_logs.csv"), ("ndjson", "audit_logs.ndjson"), ("parquet", "audit_logs.parquet")):
        store.delete(f"{fmt}/date={D2}/{name}")
    assert prune_to_exports(store) == f"log: served from entry 1600 on (days from {D3}); 5 leaf tiles before it deleted, upper tiles and checkpoints kept"
    report = _run("verify")
    assert "log: 1 checkpoints before the minimum index 1600 (pruned with retention) checked for signatures only" in report.output
    assert "LOG FAILED" not in report.output, report.output
    (workdir / "held.txt").write_text((root / day_checkpoint_key(D1)).read_text())
    refused = _run("prove", "--consistency", str(workdir / "held.txt"))
    assert refused.exit_code == 1 and refused.output.count("\n") == 1
    assert "the checkpoint of 700 entries is before the log's minimum index 1600 (pruned with retention)" in refused.output
