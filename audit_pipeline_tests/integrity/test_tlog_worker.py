"""The transparency log hashed by its leaf worker process: the same log as hashing in the export, whatever happens to the worker."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from audit_pipeline.config.sections.integrity import IntegritySettings
from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.exports.day import export_day
from audit_pipeline.integrity.errors import IntegrityError
from audit_pipeline.integrity.merkle import MemoryTree
from audit_pipeline.integrity.proof_verify import verify_checkpoint
from audit_pipeline.integrity.proofs import CHECKPOINT_KEY, LogAppender, parse_note, read_record
from audit_pipeline.integrity.sealing import DaySealer
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.integrity.support import DAYS, ROWS, insert_days, new_signer

D1, D2, D3 = DAYS


def _sealer(store: ObjectStore, day: dt.date, signer, *, worker: bool = True, gzip: bool = False) -> DaySealer:
    sealer = DaySealer(store, day, IntegritySettings(), signer, formula_protection=True, events_from_file=not gzip)
    sealer.tlog = LogAppender(store, day, signer, worker=worker)  # as DaySealer.from_settings attaches it
    return sealer


def _export(source, store: ObjectStore, sealer: DaySealer, *, gzip: bool = False, after_first_chunk=None) -> None:
    hooks = sealer.export_hooks()
    observe = hooks["ndjson_observer"]
    chunks = 0

    def observer(chunk, offsets) -> None:
        nonlocal chunks
        observe(chunk, offsets)
        chunks += 1
        if chunks == 1 and after_first_chunk is not None:
            after_first_chunk(sealer)

    hooks["ndjson_observer"] = observer
    export_day(source, store, sealer.day, ExportSettings(gzip=gzip), **hooks)


def _log_files(root: Path) -> dict[str, bytes | tuple[int, bytes]]:
    """The tiles, and each checkpoint's size and root (the notes name the store, so two stores' notes differ)."""
    files: dict[str, bytes | tuple[int, bytes]] = {}
    for path in sorted((root / "tlog").rglob("*")):
        if path.is_file() and "/days/" not in str(path):
            name = str(path.relative_to(root))
            head = parse_note(path.read_text()) if "checkpoint" in name else None
            files[name] = (head.size, head.root or b"") if head is not None else path.read_bytes()
    return files


def _lines(root: Path, day: dt.date) -> list[bytes]:
    return (root / f"ndjson/date={day}/audit_logs.ndjson").read_bytes().splitlines(keepends=True)


def test_the_worker_and_the_export_thread_write_the_same_log(pg, tmp_path):
    insert_days(pg, {D1: 700, D2: 5000, D3: 500})  # D2 spans two encoder chunks
    signer = new_signer()
    stores = {mode: ObjectStore(str(tmp_path / mode)) for mode in ("worker", "inline")}
    with PostgresSource(pg.readonly_url, batch_rows=1_000) as source:
        for day in DAYS:
            for mode, store in stores.items():
                sealer = _sealer(store, day, signer, worker=mode == "worker")
                _export(source, store, sealer)
                assert "appended as entries" in sealer.after_publish()
    assert _log_files(tmp_path / "worker") == _log_files(tmp_path / "inline")
    events = [line for day in DAYS for line in _lines(tmp_path / "worker", day)]
    latest = verify_checkpoint((tmp_path / "worker" / CHECKPOINT_KEY).read_text(), signer.public_key)
    assert (latest.size, latest.root) == (6200, MemoryTree(events).root())
    assert not list(tmp_path.glob("**/*.tmp-*"))


def test_a_killed_worker_is_replaced_by_hashing_the_published_ndjson(pg, tmp_path, caplog):
    insert_days(pg, ROWS)
    signer = new_signer()
    reference, store = ObjectStore(str(tmp_path / "reference")), ObjectStore(str(tmp_path / "exports"))

    def kill(sealer: DaySealer) -> None:
        assert sealer.tlog is not None and sealer.tlog._worker is not None
        sealer.tlog._worker.process.kill()
        sealer.tlog._worker.process.wait()

    with PostgresSource(pg.readonly_url, batch_rows=300) as source:
        for day in DAYS:
            sealer = _sealer(reference, day, signer, worker=False, gzip=True)
            _export(source, reference, sealer, gzip=True)
            sealer.after_publish()
            sealer = _sealer(store, day, signer, gzip=True)
            _export(source, store, sealer, gzip=True, after_first_chunk=kill if day == D2 else None)
            with caplog.at_level(logging.WARNING, logger="audit_pipeline.integrity.proofs"):
                assert "appended as entries" in sealer.after_publish()
    assert "hashing the published NDJSON of 2024-03-02 for the transparency log instead" in caplog.text
    assert _log_files(tmp_path / "exports") == _log_files(tmp_path / "reference")


def test_a_published_ndjson_that_changed_is_not_hashed_into_the_log(pg, tmp_path):
    insert_days(pg, {D1: 300})
    store = ObjectStore(str(tmp_path / "exports"))
    sealer = _sealer(store, D1, new_signer())
    with PostgresSource(pg.readonly_url) as source:
        _export(source, store, sealer, after_first_chunk=lambda s: s.tlog._worker.process.kill())
    ndjson = tmp_path / f"exports/ndjson/date={D1}/audit_logs.ndjson"
    ndjson.write_bytes(ndjson.read_bytes().replace(b'{"id":', b'{"id" :', 1))
    with pytest.raises(IntegrityError, match="no longer holds the 300 events sealed for 2024-03-01; nothing was appended"):
        sealer.after_publish()
    assert not (tmp_path / "exports" / CHECKPOINT_KEY).exists()


@pytest.mark.parametrize("between", [500, 512])
def test_a_day_sealed_after_another_lands_where_the_log_is_then(pg, tmp_path, between):
    # D2's worker starts when the log holds D1 (700 leaves); D3 is appended before D2 is sealed.  With 512
    # leaves in between, D2's tiles line up as the worker guessed (its tile roots are used); with 500 they do not.
    insert_days(pg, {D1: 700, D2: 900, D3: between})
    signer = new_signer()
    store = ObjectStore(str(tmp_path / "exports"))
    with PostgresSource(pg.readonly_url, batch_rows=1_000) as source:
        first = _sealer(store, D1, signer)
        _export(source, store, first)
        first.after_publish()
        late = _sealer(store, D2, signer)
        _export(source, store, late)
        early = _sealer(store, D3, signer)
        _export(source, store, early)
        early.after_publish()
        assert f"appended as entries {700 + between}..{1599 + between}" in late.after_publish()
    root = tmp_path / "exports"
    events = [*_lines(root, D1), *_lines(root, D3), *_lines(root, D2)]
    latest = verify_checkpoint((root / CHECKPOINT_KEY).read_text(), signer.public_key)
    assert (latest.size, latest.root) == (len(events), MemoryTree(events).root())
    record = read_record(store, D2)
    assert record is not None and (record.first, record.size) == (700 + between, 1600 + between)
