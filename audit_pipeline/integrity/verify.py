"""Verification from the object store alone: per day, OK or exactly what is wrong.

For each day: the manifest is present, parses and carries a valid signature; it links to
the previous day (its seed is that day's last hash and it records that manifest's SHA-256);
every object it lists exists with its size and SHA-256; no other object sits in the day's
folders; and the entry chain recomputed from each object (CSV and Parquet re-derived to
canonical lines) gives the manifest's event count, checkpoints and last hash.  When a
chain differs, the first bad event is found by comparing with an intact object of another
format, or narrowed to a checkpoint interval when no intact copy is left.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from audit_pipeline.core.layout import (
    FORMATS,
    MANIFEST_PREFIX,
    day_in_data_key,
    day_of_manifest_key,
    day_of_retirement_key,
    day_prefix,
    manifest_key,
    retirement_key,
)
from audit_pipeline.integrity.canonical import CanonicalError, StoredObjectReader
from audit_pipeline.integrity.chain import GENESIS, EntryChain
from audit_pipeline.integrity.diagnosis import first_difference, first_out_of_order
from audit_pipeline.integrity.head import HeadCheck, Seen, check_head
from audit_pipeline.integrity.linking import ONE_DAY
from audit_pipeline.integrity.log_verify import LogCheck, check_log
from audit_pipeline.integrity.manifest import Manifest, ManifestError, ObjectEntry, sha256_hex
from audit_pipeline.integrity.report import DayReport
from audit_pipeline.integrity.retirement import Retirement
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.storage.object_store import ObjectStore

__all__ = ["Verifier"]


@dataclass
class _Checked:
    entry: ObjectEntry
    sha_ok: bool
    chain: EntryChain
    error: CanonicalError | None

    def chain_matches(self, manifest: Manifest) -> bool:
        return (
            self.error is None
            and self.chain.rows == manifest.rows
            and self.chain.last_hash == manifest.chain.last_hash
            and self.chain.events_sha256 == manifest.chain.events_sha256
            and tuple(self.chain.checkpoints) == manifest.chain.checkpoints
        )


class Verifier:
    def __init__(self, store: ObjectStore, keyring: Keyring, formats: Iterable[str] = FORMATS) -> None:
        self.store = store
        self.keyring = keyring
        self.formats = tuple(formats)
        keys = store.list(MANIFEST_PREFIX)
        #: One listing per prefix instead of a request per key: verify reads only what exists.
        self._manifest_keys = set(keys)
        self._format_keys: dict[str, list[str]] = {}
        self.manifest_days = sorted(d for d in (day_of_manifest_key(k) for k in keys) if d is not None)
        self.retired_days = sorted(d for d in map(day_of_retirement_key, keys) if d is not None)

    # -- what the store holds -------------------------------------------------------------------
    def _objects(self, fmt: str) -> list[str]:
        if fmt not in self._format_keys:
            self._format_keys[fmt] = self.store.list(fmt)
        return self._format_keys[fmt]

    def _day_objects(self, fmt: str, day: dt.date) -> list[str]:
        prefix = day_prefix(fmt, day) + "/"
        return [k for k in self._objects(fmt) if k.startswith(prefix)]

    def _read(self, key: str) -> bytes | None:
        return self.store.read_bytes(key) if key in self._manifest_keys else None

    def _retired(self, day: dt.date) -> Retirement | None:
        raw = self._read(retirement_key(day))
        return Retirement.from_bytes(raw) if raw is not None else None

    def in_chain(self, day: dt.date) -> bool:
        """The day has a manifest or a retirement record: it is part of the chain and its neighbours rely on it."""
        return manifest_key(day) in self._manifest_keys or retirement_key(day) in self._manifest_keys

    # -- ranges ---------------------------------------------------------------------------------
    def data_days(self) -> list[dt.date]:
        days: set[dt.date] = set()
        for fmt in FORMATS:
            for key in self._objects(fmt):
                day = day_in_data_key(key)  # None for a date= that is not a calendar day: not one of our exports
                if day is not None:
                    days.add(day)
        return sorted(days)

    def check_head(self, witness: Seen | None = None) -> HeadCheck:
        """What ``manifests/head.json`` says about the newest days (see :mod:`.head`)."""
        return check_head(self.store, self.keyring, self.manifest_days[-1] if self.manifest_days else None, witness)

    def check_log(self, tsa_ca_file: Path | None = None, timestamp_required: bool = False) -> LogCheck | None:
        """The transparency log's checkpoints, each extended by the next, and their timestamps (see :mod:`.log_verify`); None without a log."""
        return check_log(self.store, self.keyring, tsa_ca_file, timestamp_required)

    def verify_range(self, first: dt.date | None = None, last: dt.date | None = None, head: HeadCheck | None = None) -> list[DayReport]:
        """Every day from ``first`` (default: the earliest manifest or export) to ``last``.

        ``last`` defaults to the latest day in the store, or the day a valid head names when
        that is later: days deleted from the end of the chain then show as missing.
        """
        known = sorted(set(self.manifest_days) | set(self.retired_days) | set(self.data_days()))
        if last is None and head is not None and head.head is not None and head.trusted:
            known.append(head.head.day)
        if first is None and not known:
            return []
        start = first or known[0]
        end = last or max([start, *known])
        return [self.verify_day(start + dt.timedelta(days=i)) for i in range((end - start).days + 1)]

    # -- one day --------------------------------------------------------------------------------
    def verify_day(self, day: dt.date) -> DayReport:
        report = DayReport(day)
        key = manifest_key(day)
        raw = self._read(key)
        retirement = self._retirement(day, report)
        if raw is None:
            if retirement is not None:
                report.retired = True
                report.rows = retirement.rows
                report.notes.append(f"retired on {retirement.at} ({retirement.reason}); manifest removed")
                return report
            present = [k for fmt in FORMATS for k in self._day_objects(fmt, day)]
            extra = f"; objects without a manifest: {', '.join(present)}" if present else ""
            report.add("manifest", f"manifest missing: {key} (a gap in the chain){extra}")
            return report
        try:
            manifest = Manifest.from_bytes(raw)
        except ManifestError as exc:
            report.add("manifest", f"manifest altered: {key} is not a valid manifest ({exc})")
            return report
        report.rows = manifest.rows
        if manifest.day != day:
            report.add("manifest", f"manifest altered: {key} describes {manifest.day}")
        check = self.keyring.check(manifest, self.store)
        if check.ok:
            report.notes.append(check.message)
        else:
            report.add("signature", f"manifest altered or signature invalid: {key}: {check.message}")
        self._check_link(manifest, report)
        self._check_objects(manifest, report, retirement)
        for entry in manifest.history:
            if entry.action == "rechained":
                report.notes.append(f"rechained {entry.at}: {entry.reason}")
        return report

    def _retirement(self, day: dt.date, report: DayReport) -> Retirement | None:
        try:
            retirement = self._retired(day)
        except ManifestError as exc:
            report.add("manifest", f"{retirement_key(day)} is not a valid retirement record ({exc})")
            return None
        if retirement is not None:
            check = self.keyring.check(retirement, self.store)
            if not check.ok:
                report.add("signature", f"retirement record altered or signature invalid: {retirement_key(day)}: {check.message}")
        return retirement

    def _check_link(self, manifest: Manifest, report: DayReport) -> None:
        day, before = manifest.day, manifest.day - ONE_DAY
        previous_key = manifest_key(before)
        previous_raw = self._read(previous_key)
        # Anything of an earlier day still in the store (even objects alone) means this day does not start the chain.
        earlier = any(d < day for d in (*self.manifest_days, *self.retired_days)) or any(self._day_objects(fmt, before) for fmt in FORMATS)
        if previous_raw is not None:
            try:
                previous = Manifest.from_bytes(previous_raw)
            except ManifestError:
                report.add("link", f"cannot check the link: {previous_key} is not a valid manifest")
                return
            expected_sha, expected_seed = sha256_hex(previous_raw), previous.chain.last_hash
        else:
            try:
                retired = self._retired(before)
            except ManifestError:
                retired = None
            if retired is not None:
                expected_sha, expected_seed = retired.manifest_sha256, retired.last_hash
            elif manifest.previous is None:
                if earlier:
                    report.add("gap", f"{before} has no manifest: a gap in the chain before this day")
                elif manifest.chain.seed != GENESIS.hex():
                    report.add("link", "chain broken: the first day of the chain is not seeded with the genesis value")
                else:
                    report.notes.append("start of the chain")
                return
            elif earlier:  # this day was linked to a manifest that is gone: removed, not merely never exported
                report.add("link", f"manifest missing for {before}: a gap in the chain before this day")
                return
            else:
                report.notes.append(f"start of the verifiable range: linked to {before}, which is no longer in the store")
                return
        if manifest.previous is None:
            report.add("link", f"not linked to {before}: this day was sealed before {before}; run `audit-pipeline relink --from {day}`")
            return
        if manifest.previous.day != before:
            report.add("link", f"manifest altered: it links to {manifest.previous.day}, not {before}")
        if manifest.previous.manifest_sha256 != expected_sha:
            report.add(
                "link",
                f"{previous_key} changed after this day was sealed (SHA-256 {expected_sha[:12]}…, recorded {manifest.previous.manifest_sha256[:12]}…): "
                f"the previous manifest was altered or replaced without re-linking",
            )
        if manifest.chain.seed != expected_seed:
            report.add("link", f"chain broken: this day's seed {manifest.chain.seed[:12]}… is not {before}'s last hash {expected_seed[:12]}…")

    def _check_objects(self, manifest: Manifest, report: DayReport, retirement: Retirement | None) -> None:
        deleted = set(retirement.deleted) if retirement is not None else set()
        listed = {o.key for o in manifest.objects}
        checked: list[_Checked] = []
        for fmt in self.formats:
            entry = manifest.object_for(fmt)
            if entry is None:
                report.add("manifest", f"the manifest lists no {fmt} object")
                continue
            if entry.rows != manifest.rows:
                report.add("manifest", f"manifest altered: it says {manifest.rows} events but {entry.rows} for {entry.key}")
            if entry.key not in self._objects(fmt):
                if entry.key in deleted:
                    report.retired = True
                    report.notes.append(f"{entry.key} deleted by retention ({retirement.reason if retirement else ''})")
                else:
                    report.add("object", f"object missing: {entry.key}")
                continue
            checked.append(self._check_object(manifest, entry, report))
        for fmt in self.formats:
            for key in self._day_objects(fmt, manifest.day):
                if key not in listed:
                    report.add("object", f"unexpected object, not in the manifest: {key}")
        intact = [c for c in checked if c.sha_ok and c.chain_matches(manifest)]
        for result in checked:
            if result.chain_matches(manifest) or result.error is not None:
                continue
            if result.sha_ok:
                if result.chain.rows != manifest.rows:
                    report.add("manifest", f"manifest altered: it says {manifest.rows} events, but {result.entry.key} (intact) holds {result.chain.rows}")
                else:
                    report.add("manifest", f"manifest altered: {result.entry.key} is intact but its chain differs from the manifest's chain values")
                continue
            report.add("events", self._diagnose(manifest, result, intact[0] if intact else None))

    def _reader(self, manifest: Manifest, entry: ObjectEntry) -> StoredObjectReader:
        return StoredObjectReader(self.store, entry.key, entry.format, manifest.csv.model_dump())

    def _check_object(self, manifest: Manifest, entry: ObjectEntry, report: DayReport) -> _Checked:
        reader = self._reader(manifest, entry)
        chain = EntryChain(bytes.fromhex(manifest.chain.seed), manifest.chain.checkpoint_rows)
        error = None
        try:
            for chunk in reader.chunks():
                chain.update(chunk)
        except CanonicalError as exc:
            error = exc
        sha_ok = reader.sha256 == entry.sha256 and reader.size == entry.bytes
        if not sha_ok:
            report.add(
                "object",
                f"object modified: {entry.key} (SHA-256 {str(reader.sha256)[:12]}…, {reader.size} bytes; "
                f"the manifest says {entry.sha256[:12]}…, {entry.bytes} bytes)",
            )
        if error is not None:
            report.add("events", f"{entry.key}: cannot be read back as events from event {error.row}: {error}")
        elif not sha_ok and chain.rows == manifest.rows and chain.last_hash == manifest.chain.last_hash:
            report.notes.append(f"{entry.key}: its bytes changed but its events did not")
        return _Checked(entry, sha_ok, chain, error)

    def _diagnose(self, manifest: Manifest, result: _Checked, reference: _Checked | None) -> str:
        """Name what happened to the events of a modified object and the first bad event."""
        every = manifest.chain.checkpoint_rows
        found, expected = result.chain.checkpoints, manifest.chain.checkpoints
        block = next((i for i, (a, b) in enumerate(zip(found, expected, strict=False)) if a != b), min(len(found), len(expected)))
        lines = self._reader(manifest, result.entry).lines()
        first_bad, out_of_order = None, None
        if reference is not None:
            first_bad, out_of_order = first_difference(lines, self._reader(manifest, reference.entry).lines(), every)
        else:
            out_of_order = first_out_of_order(lines)
        rows, expected_rows = result.chain.rows, manifest.rows
        if rows < expected_rows:
            kind = "events deleted"
        elif rows > expected_rows:
            kind = "events inserted"
        elif out_of_order is not None:
            kind = "events reordered"
        else:
            kind = "events altered"
        where = f"event {first_bad}" if first_bad else f"an event in {block * every + 1}–{(block + 1) * every}"
        text = f"{result.entry.key}: {kind}: the recomputed chain differs from {where} on"
        if rows != expected_rows:
            text += f" ({rows} events, the manifest says {expected_rows})"
        if out_of_order is not None:
            text += f"; event {out_of_order} is out of (created_at, id) order"
        return text
