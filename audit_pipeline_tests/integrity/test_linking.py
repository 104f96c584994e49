"""The chain across days: out-of-order and concurrent backfills, re-exports, rechains, gzip changes."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import threading

import pytest
import yaml
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.config.sections.integrity import IntegritySettings
from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.core.layout import manifest_key
from audit_pipeline.exports.day import export_day
from audit_pipeline.integrity.errors import IntegrityError
from audit_pipeline.integrity.manifest import HistoryEntry, Manifest, sha256_hex
from audit_pipeline.integrity.sealing import DaySealer
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.helpers import tree
from audit_pipeline_tests.integrity.support import DAYS, insert_days, messages, new_signer, seal, verify, write_private_key

D1, D2, D3 = DAYS
SMALL = {D1: 150, D2: 120, D3: 90}


def _manifest(root, day) -> Manifest:
    return Manifest.from_bytes((root / manifest_key(day)).read_bytes())


def _snapshot(root) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in tree(root)}


def _assert_chain_intact(root, days=DAYS) -> None:
    reports = verify(ObjectStore(str(root)))
    for day in days:
        assert reports[day].ok, f"{day}: {messages(reports[day])}"
    for before, after in itertools.pairwise(days):
        previous, current = _manifest(root, before), _manifest(root, after)
        assert current.chain.seed == previous.chain.last_hash
        assert current.previous is not None and current.previous.manifest_sha256 == sha256_hex((root / manifest_key(before)).read_bytes())


def test_days_exported_in_reverse_order_end_up_linked(pg, tmp_path):
    insert_days(pg, SMALL)
    root = tmp_path / "x"
    store = ObjectStore(str(root))
    signer = new_signer()
    in_order = tmp_path / "in_order"
    with PostgresSource(pg.readonly_url) as source:
        for day in DAYS:
            seal(source, ObjectStore(str(in_order)), day, signer=signer)
        _, _, _third = seal(source, store, D3, signer=signer)
        assert _manifest(root, D3).previous is None  # nothing before it yet: seeded from genesis
        seal(source, store, D2, signer=signer)
        _, _, first = seal(source, store, D1, signer=signer)
    assert f"{D2}: linked to {D1}" in first and f"{D3}: relinked to {D2}" in first
    _assert_chain_intact(root)
    # Same chain as exporting in order; the history says how the links came about.
    for day in DAYS:
        assert _manifest(root, day).chain == _manifest(in_order, day).chain
    assert [h.action for h in _manifest(root, D3).history] == ["linked", "relinked"]
    assert _manifest(root, D2).history[0].reason == f"{D1} was published after this day was sealed"
    assert _manifest(root, D3).history[1].reason == f"the manifest of {D2} changed"


def test_previous_day_published_while_a_day_was_exporting(pg, tmp_path):
    """D2 starts without D1's manifest; D1 is published before D2 publishes: D2 re-hashes its staged file."""
    insert_days(pg, SMALL)
    store = ObjectStore(str(tmp_path / "x"))
    with PostgresSource(pg.readonly_url) as source:
        sealer = DaySealer(store, D2, IntegritySettings(checkpoint_rows=100), None, formula_protection=True)
        assert sealer.target.previous is None
        hooks = sealer.export_hooks()
        inner = hooks["before_publish"]

        def previous_day_lands_first(export, written):
            seal(source, store, D1)
            return inner(export, written)

        export_day(source, store, D2, ExportSettings(), ndjson_observer=hooks["ndjson_observer"], before_publish=previous_day_lands_first)
        assert sealer.after_publish().startswith(f"{D2}: manifest sealed")
    manifest = _manifest(tmp_path / "x", D2)
    assert manifest.previous is not None and manifest.history == ()
    _assert_chain_intact(tmp_path / "x", (D1, D2))


def test_previous_day_published_between_check_and_publish(pg, tmp_path):
    """The narrow race: D2 publishes unlinked after D1's forward link looked; D2's own after-publish links it."""
    insert_days(pg, SMALL)
    store = ObjectStore(str(tmp_path / "x"))
    with PostgresSource(pg.readonly_url) as source:
        sealer = DaySealer(store, D2, IntegritySettings(checkpoint_rows=100), None, formula_protection=True)
        hooks = sealer.export_hooks()
        inner = hooks["before_publish"]

        def previous_day_lands_after_the_check(export, written):
            extra = inner(export, written)  # sealed as unlinked
            seal(source, store, D1)  # finds no manifest of D2 yet
            return extra

        export_day(source, store, D2, ExportSettings(), ndjson_observer=hooks["ndjson_observer"], before_publish=previous_day_lands_after_the_check)
        assert _manifest(tmp_path / "x", D2).previous is None
        assert f"{D2}: linked to {D1}" in sealer.after_publish()
    _assert_chain_intact(tmp_path / "x", (D1, D2))


def test_concurrent_backfill_in_random_order(pg, tmp_path):
    days = tuple(D1 + dt.timedelta(days=i) for i in range(6))
    insert_days(pg, {day: 60 + 10 * i for i, day in enumerate(days)})
    store_root = tmp_path / "x"
    signer = new_signer()
    order = list(days)
    random.Random(11).shuffle(order)
    errors: list[BaseException] = []
    gate = threading.Semaphore(3)  # like a backfill with a few runs at a time

    def run(day):
        with gate:
            try:
                with PostgresSource(pg.readonly_url) as source:
                    seal(source, ObjectStore(str(store_root)), day, signer=signer)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(day,)) for day in order]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "an export thread did not finish"
    assert not errors
    _assert_chain_intact(store_root, days)


def test_a_day_without_events_passes_the_chain_through(pg, tmp_path):
    insert_days(pg, {D1: 40, D3: 30})
    root = tmp_path / "x"
    with PostgresSource(pg.readonly_url) as source:
        for day in DAYS:
            seal(source, ObjectStore(str(root)), day)
    empty = _manifest(root, D2)
    assert (empty.rows, empty.first, empty.chain.last_hash) == (0, None, empty.chain.seed)
    _assert_chain_intact(root)


def test_unchanged_reexport_leaves_every_byte_in_place(pg, tmp_path):
    insert_days(pg, SMALL)
    root = tmp_path / "x"
    signer = new_signer()
    with PostgresSource(pg.readonly_url) as source:
        for day in DAYS:
            seal(source, ObjectStore(str(root)), day, signer=signer)
        before = _snapshot(root)
        _, sealer, _ = seal(source, ObjectStore(str(root)), D2, signer=signer)
    assert sealer.outcome == "unchanged"
    assert _snapshot(root) == before


def test_changed_events_are_refused_until_rechained(pg, tmp_path, workdir, monkeypatch):
    insert_days(pg, SMALL)
    root = tmp_path / "x"
    signer = new_signer()
    with PostgresSource(pg.readonly_url) as source:
        for day in DAYS:
            seal(source, ObjectStore(str(root)), day, signer=signer)
    before = _snapshot(root)
    pg.insert(generate_events(D2, 3, seed=99))  # late rows
    with PostgresSource(pg.readonly_url) as source, pytest.raises(IntegrityError) as refused:
        seal(source, ObjectStore(str(root)), D2, signer=signer)
    assert f"{D2} was already exported with different events ({SMALL[D2]} events" in str(refused.value)
    assert f'audit-pipeline rechain --from {D2} --reason "..."' in str(refused.value)
    assert _snapshot(root) == before  # nothing published

    key = write_private_key(signer, workdir / "manifest_key.pem")
    (workdir / "audit_pipeline.yaml").write_text(
        yaml.safe_dump(
            {
                "source": {"database_url": pg.readonly_url},
                "export": {"url": str(root)},
                "integrity": {"private_key_file": str(key), "checkpoint_rows": 100},
            }
        )
    )
    result = CliRunner().invoke(main, ["rechain", "--from", str(D2), "--reason", "late rows from the replica"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"{D2}: manifest rechained" in result.output and f"{D3}: relinked to {D2}" in result.output
    rechained = _manifest(root, D2)
    entry = rechained.history[-1]
    assert (entry.action, entry.reason, entry.rows_before) == ("rechained", "late rows from the replica", SMALL[D2])
    assert entry.replaced_manifest_sha256 == sha256_hex(before[manifest_key(D2)])
    assert rechained.rows == SMALL[D2] + 3
    assert _manifest(root, D3).history[-1].reason == f"the manifest of {D2} changed (rechained: late rows from the replica)"
    _assert_chain_intact(root)
    verified = CliRunner().invoke(main, ["verify"])
    assert verified.exit_code == 0, verified.output
    assert "rechained" in verified.output and "late rows from the replica" in verified.output
    # The reason is mandatory and must say something.
    blank = CliRunner().invoke(main, ["rechain", "--from", str(D2), "--reason", "  "])
    assert blank.exit_code == 2 and "--reason must say why" in blank.output


def test_gzip_switch_reencodes_and_relinks_later_days(pg, tmp_path):
    insert_days(pg, SMALL)
    root = tmp_path / "x"
    with PostgresSource(pg.readonly_url) as source:
        for day in DAYS:
            seal(source, ObjectStore(str(root)), day)
        before = _manifest(root, D3)
        _, sealer, summary = seal(source, ObjectStore(str(root)), D1, options=ExportSettings(gzip=True))
    assert sealer.outcome == "re-encoded"
    assert f"{D2}: relinked to {D1}" in summary
    first = _manifest(root, D1)
    assert {o.key for o in first.objects} >= {f"csv/date={D1}/audit_logs.csv.gz", f"ndjson/date={D1}/audit_logs.ndjson.gz"}
    _assert_chain_intact(root)
    after = _manifest(root, D3)
    assert after.chain == before.chain  # same events and seeds: only the recorded manifest hashes moved
    assert [h.action for h in after.history] == ["relinked"]


def test_tampered_previous_manifest_stops_the_next_export(pg, tmp_path):
    insert_days(pg, SMALL)
    root = tmp_path / "x"
    signer = new_signer()
    with PostgresSource(pg.readonly_url) as source:
        seal(source, ObjectStore(str(root)), D1, signer=signer)
        path = root / manifest_key(D1)
        document = json.loads(path.read_text())
        document["chain"]["last_hash"] = "0" * 64
        path.write_text(json.dumps(document))
        with pytest.raises(IntegrityError, match=rf"refusing to continue the chain of {D2} from manifests/date={D1}.json: signature invalid"):
            seal(source, ObjectStore(str(root)), D2, signer=signer)
    assert not (root / manifest_key(D2)).exists() and not (root / f"csv/date={D2}").exists()


def test_relink_command_repairs_an_interrupted_backfill(pg, tmp_path, workdir, monkeypatch):
    insert_days(pg, SMALL)
    root = tmp_path / "x"
    store = ObjectStore(str(root))
    with PostgresSource(pg.readonly_url) as source:
        seal(source, store, D3)
        seal(source, store, D2)
        # D1 is exported by a run that dies after publishing, before it could link the following days.
        sealer = DaySealer(store, D1, IntegritySettings(checkpoint_rows=100), None, formula_protection=True)
        export_day(source, store, D1, ExportSettings(), **sealer.export_hooks())
    reports = verify(store)
    assert f"not linked to {D1}: this day was sealed before {D1}; run `audit-pipeline relink --from {D2}`" in messages(reports[D2])
    assert reports[D2].only_link_problems
    monkeypatch.setenv("AUDIT_EXPORT_URL", str(root))
    result = CliRunner().invoke(main, ["relink", "--from", str(D1)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"{D2}: linked to {D1}" in result.output and f"{D3}: relinked to {D2}" in result.output
    _assert_chain_intact(root)
    again = CliRunner().invoke(main, ["relink", "--from", str(D1)], catch_exceptions=False)
    assert f"every day from {D1} on is already linked" in again.output


def test_relink_refuses_a_day_whose_objects_were_tampered_with(pg, tmp_path):
    insert_days(pg, SMALL)
    root = tmp_path / "x"
    store = ObjectStore(str(root))
    with PostgresSource(pg.readonly_url) as source:
        seal(source, store, D2)
        for fmt, name in (("csv", "audit_logs.csv"), ("ndjson", "audit_logs.ndjson"), ("parquet", "audit_logs.parquet")):
            path = root / f"{fmt}/date={D2}/{name}"
            path.write_bytes(path.read_bytes()[:-10])
        warnings: list[str] = []
        sealer = DaySealer(store, D1, IntegritySettings(), None, formula_protection=True)
        export_day(source, store, D1, ExportSettings(), **sealer.export_hooks())
        sealer.after_publish(warn=warnings.append)
    assert len(warnings) == 1 and f"cannot re-link {D2}: no object of the day still matches its manifest" in warnings[0]
    assert _manifest(root, D2).previous is None  # left as it was, for verify to report


def test_a_day_replaced_while_the_next_is_relinked_is_followed(pg, tmp_path):
    """Another run replaces D2 right after this run re-linked D3 to it: D3 is redone, so the chain ends linked."""
    insert_days(pg, SMALL)
    root = tmp_path / "x"
    store = ObjectStore(str(root))
    signer = new_signer()
    with PostgresSource(pg.readonly_url) as source:
        seal(source, store, D2, signer=signer)
        seal(source, store, D3, signer=signer)
        put_bytes = store.put_bytes
        interfered: list[str] = []

        def put_then_replace_d2(key, data, content_type):
            put_bytes(key, data, content_type)
            if key == manifest_key(D3) and not interfered:
                raw = (root / manifest_key(D2)).read_bytes()
                current = Manifest.from_bytes(raw)
                entry = HistoryEntry(action="re-signed", reason="another run", replaced_manifest_sha256=sha256_hex(raw))
                replaced = current.model_copy(update={"history": (*current.history, entry), "signature": None})
                put_bytes(manifest_key(D2), replaced.model_copy(update={"signature": signer.sign(replaced)}).to_bytes(), "application/json")
                interfered.append(key)

        store.put_bytes = put_then_replace_d2  # type: ignore[method-assign]
        seal(source, store, D1, signer=signer)
    assert interfered
    assert [h.action for h in _manifest(root, D3).history] == ["relinked", "relinked"]
    _assert_chain_intact(root)
