"""Sealing an export: chain the events as they are written, write the manifest last, link the days after.

Hooks into :func:`audit_pipeline.exports.day.export_day`: :meth:`DaySealer.observe` hashes each
NDJSON chunk as the writer produces it, :meth:`DaySealer.before_publish` builds and signs the
manifest once every file is staged (so it is published after the data objects), and
:meth:`DaySealer.after_publish` repairs the links of the days that follow.

Re-exporting a day that already has a manifest:

- same events, same link, same objects: the manifest is left as it is (exports are
  deterministic, so this is the normal outcome of a re-run);
- same events, but the link or the objects changed (the previous day was published
  meanwhile, or export settings such as gzip changed): a new manifest with a
  ``linked``/``relinked``/``re-encoded``/``re-signed`` history entry;
- different events: refused before anything is published, unless the export runs as a
  rechain (``audit-pipeline rechain --from DAY --reason ...``), which records the reason,
  the time and the replaced manifest's hash, and then re-links every following day.

A crash at any point leaves the previous objects and manifest (publishing is atomic per
object and the manifest comes last); a crash between the data objects and the manifest
leaves objects newer than their manifest, which verify reports until the day is exported
again.  Two exports of the same day must not run at once (Dagster runs one per partition).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import numpy as np

from audit_pipeline.config.sections.integrity import IntegritySettings
from audit_pipeline.config.settings import Settings
from audit_pipeline.core.errors import AuditPipelineError
from audit_pipeline.core.event_filters import EventFilter, describe
from audit_pipeline.core.layout import HEAD_KEY, manifest_key, object_key
from audit_pipeline.exports.day import BeforePublish, DayExport
from audit_pipeline.formats.writers import WrittenFile, open_text_reader
from audit_pipeline.integrity.canonical import literal_apostrophe_cells, ndjson_chunks
from audit_pipeline.integrity.chain import EntryChain, line_offsets
from audit_pipeline.integrity.errors import IntegrityError
from audit_pipeline.integrity.head import HeadWitness, update_head
from audit_pipeline.integrity.linking import LinkTarget, link_change, link_forward, link_target
from audit_pipeline.integrity.manifest import (
    CONTENT_TYPE,
    ChainInfo,
    CsvInfo,
    EventRef,
    HistoryEntry,
    Manifest,
    ManifestError,
    ObjectEntry,
    read_optional,
    sha256_hex,
)
from audit_pipeline.integrity.proofs import LogAppender, log_lock
from audit_pipeline.integrity.signer import Signer
from audit_pipeline.integrity.signing import Keyring, load_signer
from audit_pipeline.storage.object_store import ObjectStore

logger = logging.getLogger(__name__)


class SealerHooks(TypedDict, total=False):
    """The sealer's keyword arguments for :func:`audit_pipeline.exports.day.export_day`, typed so that ``**hooks`` is checked."""

    ndjson_observer: Callable[[memoryview, np.ndarray], None]
    before_publish: BeforePublish


def _event_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _filter_document(event_filter: EventFilter | None) -> dict[str, tuple[str, ...]] | None:
    described = describe(event_filter)
    return {k: tuple(v) for k, v in described.items()} or None


class DaySealer:
    """Integrity for one export of one day.  Build it right before ``export_day``; use it once."""

    def __init__(
        self,
        store: ObjectStore,
        day: dt.date,
        config: IntegritySettings,
        signer: Signer | None,
        *,
        formula_protection: bool,
        rechain_reason: str | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        witness: HeadWitness | None = None,
        events_from_file: bool = False,
    ) -> None:
        """``events_from_file``: the NDJSON is written uncompressed, so its file SHA-256 *is* the events'
        SHA-256 and the chain need not hash the day a second time (the export's settings decide)."""
        self.store = store
        self.day = day
        self.config = config
        self.enabled = config.enabled
        self.signer = signer
        self.keyring = Keyring.for_signer(signer, config)
        self.formula_protection = formula_protection
        self.rechain_reason = rechain_reason
        #: Where the highest head written is remembered (the state database), to notice a replayed head.
        self.witness = witness
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.target = link_target(store, day, self.keyring) if self.enabled else LinkTarget(bytes(32), None)
        self.events_from_file = events_from_file
        self.chain = EntryChain(self.target.seed, config.checkpoint_rows, hash_events=not events_from_file)
        self.literal_cells: list[tuple[int, str]] = []
        self.manifest: Manifest | None = None
        #: What happened to the manifest: sealed, unchanged, linked, relinked, re-encoded, re-signed, rechained.
        self.outcome = "not sealed"
        #: The transparency log's appender (set by :meth:`from_settings`): the day's leaves, appended once published.
        self.tlog: LogAppender | None = None

    @classmethod
    def from_settings(cls, settings: Settings, store: ObjectStore, day: dt.date, rechain_reason: str | None = None) -> DaySealer:
        config = settings.integrity
        signer = load_signer(config) if config.enabled else None
        for warning in Keyring.for_signer(signer, config).warnings:
            logger.warning(warning)
        witness = HeadWitness(settings.state_url) if config.enabled and settings.state_url else None
        sealer = cls(
            store,
            day,
            config,
            signer,
            formula_protection=settings.export.csv_formula_protection,
            rechain_reason=rechain_reason,
            witness=witness,
            events_from_file=not settings.export.gzip,
        )
        if config.enabled and config.transparency_log:
            sealer.tlog = LogAppender(
                store, day, signer, log_lock(settings, store), timestamp_url=config.timestamp_url, timestamp_ca_file=config.timestamp_ca_file
            )
        return sealer

    def export_hooks(self) -> SealerHooks:
        """Keyword arguments for ``export_day`` (none when integrity is disabled)."""
        if not self.enabled:
            return {}
        return {"ndjson_observer": self.observe, "before_publish": self.before_publish}

    # -- during the export ----------------------------------------------------------------------
    def observe(self, chunk: memoryview, offsets: np.ndarray | None = None) -> None:
        """Chain a chunk of whole NDJSON lines; ``offsets`` (line starts plus the end) when the encoder knows them."""
        starts: list[int] = line_offsets(chunk) if offsets is None else offsets.tolist()
        if self.formula_protection:
            self.literal_cells.extend(literal_apostrophe_cells(chunk, starts, self.chain.rows + 1))
        self.chain.update(chunk, starts)
        if self.tlog is not None:
            self.tlog.observe(chunk, starts)

    def before_publish(self, export: DayExport, written: dict[str, WrittenFile]) -> list[tuple[str, bytes, str]]:
        if self.chain.rows != export.rows:
            raise IntegrityError(f"the entry chain saw {self.chain.rows} events but the export wrote {export.rows}; nothing was published")
        if self.events_from_file:
            if written["ndjson"].content_encoding is not None:
                raise IntegrityError(f"the NDJSON of {self.day} was compressed, so its file hash is not the events' hash; nothing was published")
            self.chain.adopt_events_sha256(written["ndjson"].sha256)
        target = link_target(self.store, self.day, self.keyring)
        if target.seed != self.chain.seed:  # the previous day was published (or replaced) while this one was exported
            self.chain = self._rehash(written["ndjson"], target.seed)
        self.target = target
        built = Manifest(
            day=self.day,
            rows=export.rows,
            first=EventRef(id=export.first_id, created_at=_event_time(export.min_created_at)) if export.first_id and export.min_created_at else None,
            last=EventRef(id=export.last_id, created_at=_event_time(export.max_created_at)) if export.last_id and export.max_created_at else None,
            chain=ChainInfo(
                seed=self.chain.seed.hex(),
                last_hash=self.chain.last_hash,
                checkpoint_rows=self.chain.checkpoint_rows,
                checkpoints=tuple(self.chain.checkpoints),
                events_sha256=self.chain.events_sha256,
            ),
            previous=target.previous,
            objects=tuple(
                ObjectEntry(
                    format=fmt,  # type: ignore[arg-type]
                    key=object_key(fmt, self.day, w.name),
                    bytes=w.bytes,
                    sha256=w.sha256,
                    rows=w.rows,
                    content_type=w.content_type,
                    content_encoding=w.content_encoding,
                )
                for fmt, w in sorted(written.items())
            ),
            csv=CsvInfo(formula_protection=self.formula_protection, literal_apostrophe_cells=tuple(self.literal_cells)),
            event_filter=_filter_document(export.event_filter),
        )
        manifest, changed = self._reconcile(built, read_optional(self.store, manifest_key(self.day)))
        self.manifest = manifest
        extra: list[tuple[str, bytes, str]] = []
        if self.signer is not None:
            for key, data, content_type in self.signer.published_keys():
                if read_optional(self.store, key) != data:
                    extra.append((key, data, content_type))
        if changed:
            extra.append((manifest_key(self.day), manifest.to_bytes(), CONTENT_TYPE))
        return extra

    def _rehash(self, ndjson: WrittenFile, seed: bytes) -> EntryChain:
        chain = EntryChain(seed, self.config.checkpoint_rows)
        with open(Path(ndjson.local_path), "rb") as raw, open_text_reader(raw, ndjson.name) as text:
            for chunk in ndjson_chunks(text):
                chain.update(chunk)
        if chain.events_sha256 != self.chain.events_sha256:
            raise IntegrityError(f"the staged NDJSON of {self.day} no longer matches the events exported; nothing was published")
        return chain

    def _sign(self, manifest: Manifest) -> Manifest:
        manifest = manifest.model_copy(update={"signature": None})
        if self.signer is None:
            return manifest
        return manifest.model_copy(update={"signature": self.signer.sign(manifest)})

    def _reconcile(self, built: Manifest, existing_raw: bytes | None) -> tuple[Manifest, bool]:
        """The manifest to publish and whether it differs from the one in the store."""
        if existing_raw is None:
            self.outcome = "sealed"
            return self._sign(built), True
        try:
            old: Manifest | None = Manifest.from_bytes(existing_raw)
        except ManifestError:
            old = None
        replaced = sha256_hex(existing_raw)
        if old is not None and old.rows == built.rows and old.chain.events_sha256 == built.chain.events_sha256:
            candidate = self._sign(built.model_copy(update={"history": old.history}))
            if candidate.to_bytes() == existing_raw:
                self.outcome = "unchanged"
                return old, False
            action: str
            if old.chain.seed != built.chain.seed or old.previous != built.previous:
                action, reason = link_change(self.day, old.previous, self.target)
            elif old.objects != built.objects or old.csv != built.csv or old.event_filter != built.event_filter:
                action, reason = "re-encoded", "the same events were exported again with different export settings"
            else:
                action = "re-signed"
                reason = f"now signed with {self.signer.algorithm} key {self.signer.key_id}" if self.signer else "signing turned off"
            entry = HistoryEntry(action=action, reason=reason, replaced_manifest_sha256=replaced)  # type: ignore[arg-type]
            self.outcome = action
            return self._sign(built.model_copy(update={"history": (*old.history, entry)})), True
        if self.rechain_reason is None:
            before = f"{old.rows} events, events SHA-256 {old.chain.events_sha256[:12]}…" if old else "an unreadable manifest"
            raise IntegrityError(
                f"{self.day} was already exported with different events ({before}; this export has {built.rows} events, "
                f"{built.chain.events_sha256[:12]}…). Later days' chains continue from it, so nothing was published. "
                f'If the change is intended (late or corrected rows), run `audit-pipeline rechain --from {self.day} --reason "..."`; '
                f"to see what differs, run `audit-pipeline verify --from {self.day} --to {self.day}`"
            )
        entry = HistoryEntry(
            action="rechained",
            reason=self.rechain_reason,
            replaced_manifest_sha256=replaced,
            at=self._clock().astimezone(dt.UTC).isoformat(timespec="seconds"),
            rows_before=old.rows if old else None,
            events_sha256_before=old.chain.events_sha256 if old else None,
        )
        self.outcome = "rechained"
        history = (*(old.history if old else ()), entry)
        return self._sign(built.model_copy(update={"history": history})), True

    # -- after publishing -----------------------------------------------------------------------
    def after_publish(self, warn: Callable[[str], None] | None = None) -> str:
        """Link the days after this one; returns a one-line summary (link failures go to ``warn``)."""
        if not self.enabled:
            return f"{self.day}: no manifest (integrity.enabled is false)"
        if self.manifest is None:
            return f"{self.day}: not sealed"
        summary = (
            f"{self.day}: manifest {self.outcome} ({manifest_key(self.day)}, {self.manifest.rows} events, "
            f"last hash {self.manifest.chain.last_hash[:16]}…, {'signed ' + self.signer.algorithm if self.signer else 'unsigned'})"
        )
        linked: list[str] = []
        try:
            linked = link_forward(self.store, self.day, self.signer, self.keyring)
        except IntegrityError as exc:
            if warn is not None:
                warn(f"could not link the days after {self.day}: {exc}")
        try:
            update_head(self.store, self.signer, self.keyring, self.witness)
        except AuditPipelineError as exc:
            if warn is not None:
                warn(f"could not update {HEAD_KEY} after {self.day}: {exc}; the next export updates it")
        finally:
            if self.witness is not None:
                self.witness.close()
        if self.tlog is not None:  # last: the day is published and linked; its events join the transparency log
            summary += f"; {self.tlog.seal(self.manifest.chain.events_sha256)}"
        return summary + "".join(f"; {line}" for line in linked)
