"""Helpers for the integrity tests: sealed exports of a few days, keys, and small tampering tools."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from audit_pipeline.config.sections.integrity import IntegritySettings
from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.exports.day import DayExport, export_day
from audit_pipeline.integrity.report import DayReport
from audit_pipeline.integrity.sealing import DaySealer
from audit_pipeline.integrity.signer import Signer
from audit_pipeline.integrity.signing import Ed25519Signer, Keyring
from audit_pipeline.integrity.verify import Verifier
from audit_pipeline.sources.base import AuditSource
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage.object_store import ObjectStore

FIRST_DAY = dt.date(2024, 3, 1)
DAYS = tuple(FIRST_DAY + dt.timedelta(days=i) for i in range(3))
ROWS = {DAYS[0]: 700, DAYS[1]: 900, DAYS[2]: 500}


def insert_days(pg, rows: dict[dt.date, int] = ROWS) -> None:
    for day, count in rows.items():
        pg.insert(generate_events(day, count))


def new_signer() -> Ed25519Signer:
    return Ed25519Signer.generate()


def write_private_key(signer: Ed25519Signer, path: Path) -> Path:
    path.write_bytes(signer.private_pem())
    return path


def write_public_key(signer: Ed25519Signer, path: Path) -> Path:
    path.write_bytes(signer.published_keys()[0][1])
    return path


def seal(
    source: AuditSource,
    store: ObjectStore,
    day: dt.date,
    *,
    signer: Signer | None = None,
    options: ExportSettings | None = None,
    rechain_reason: str | None = None,
    checkpoint_rows: int = 100,
) -> tuple[DayExport, DaySealer, str]:
    """One sealed export, as the Dagster asset runs it."""
    options = options or ExportSettings()
    sealer = DaySealer(
        store,
        day,
        IntegritySettings(checkpoint_rows=checkpoint_rows),
        signer,
        formula_protection=options.csv_formula_protection,
        rechain_reason=rechain_reason,
        events_from_file=not options.gzip,  # as DaySealer.from_settings decides
    )
    export = export_day(source, store, day, options, **sealer.export_hooks())
    return export, sealer, sealer.after_publish()


def seal_days(pg, store: ObjectStore, days=DAYS, signer: Signer | None = None, **kwargs) -> None:
    with PostgresSource(pg.readonly_url, batch_rows=1_000) as source:
        for day in days:
            seal(source, store, day, signer=signer, **kwargs)


def verify(store: ObjectStore, keyring: Keyring | None = None, **kwargs) -> dict[dt.date, DayReport]:
    return {r.day: r for r in Verifier(store, keyring or Keyring(), **kwargs).verify_range()}


def messages(report: DayReport) -> str:
    return "\n".join(p.message for p in report.problems)


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def configure_signed_log(workdir: Path, pg, signer: Ed25519Signer, **integrity: object) -> Path:
    """``audit_pipeline.yaml`` in ``workdir``: the test database, exports under ``workdir/exports``, the signer's key; the exports root."""
    import yaml

    root = workdir / "exports"
    key = write_private_key(signer, workdir / "key.pem")
    (workdir / "audit_pipeline.yaml").write_text(
        yaml.safe_dump({"source": {"database_url": pg.readonly_url}, "export": {"url": str(root)}, "integrity": {"private_key_file": str(key), **integrity}})
    )
    return root


def export_as_configured(days, batch_rows: int = 500) -> list[str]:
    """Export and seal ``days`` as the Dagster asset does, from the configuration in the working directory; the summaries."""
    from audit_pipeline.config.settings import load_settings

    settings = load_settings()
    store = ObjectStore.from_settings(settings.export)
    lines = []
    with PostgresSource(settings.source.database_url.get_secret_value(), batch_rows=batch_rows) as source:
        for day in days:
            sealer = DaySealer.from_settings(settings, store, day)
            export_day(source, store, day, settings.export, **sealer.export_hooks())
            lines.append(sealer.after_publish())
    return lines
