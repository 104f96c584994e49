"""``audit-pipeline days``: which days are exported, per format, with their row counts from the manifests.

Reads only the object store (the manifests and the listing of each format's prefix), so it
answers quickly and works where the database is not reachable.
"""

from __future__ import annotations

import datetime as dt

import click

from audit_pipeline.cli.app import config_path, friendly_errors, main
from audit_pipeline.config.settings import load_settings
from audit_pipeline.core.layout import FORMATS, day_prefix, manifest_key
from audit_pipeline.integrity.manifest import Manifest, ManifestError, read_optional
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.integrity.verify import Verifier
from audit_pipeline.storage.object_store import ObjectStore


def _rows(store: ObjectStore, day: dt.date) -> dict[str, int] | None:
    """Rows per format as the day's manifest records them; None when the day has no readable manifest."""
    data = read_optional(store, manifest_key(day))
    if data is None:
        return None
    try:
        manifest = Manifest.from_bytes(data)
    except (ManifestError, ValueError):
        return None
    return {o.format: o.rows for o in manifest.objects}


@main.command("days")
@click.pass_context
@friendly_errors
def days_command(ctx: click.Context) -> None:
    """List the exported days: for each format its row count from the day's manifest ('-' when absent)."""
    settings = load_settings(config_path(ctx))
    store = ObjectStore.from_settings(settings.export)
    verifier = Verifier(store, Keyring())
    days = sorted(set(verifier.manifest_days) | set(verifier.data_days()))
    listed = {fmt: store.list(fmt) for fmt in FORMATS}
    if not days:
        click.echo(f"no exported days in {store.uri('')} (export one with: audit-pipeline export-day YYYY-MM-DD)", err=True)
        return
    click.echo(f"{'day':<10}  " + "  ".join(f"{fmt:>10}" for fmt in FORMATS) + "  manifest")
    for day in days:
        rows = _rows(store, day)
        present = {fmt for fmt in FORMATS if any(key.startswith(day_prefix(fmt, day) + "/") for key in listed[fmt])}
        cells = []
        for fmt in FORMATS:
            if fmt not in present:
                cells.append(f"{'-':>10}")
            elif rows is not None and fmt in rows:
                cells.append(f"{rows[fmt]:>10,}")
            else:
                cells.append(f"{'?':>10}")
        click.echo(f"{day.isoformat():<10}  " + "  ".join(cells) + ("  yes" if rows is not None else "  no"))
    click.echo(f"{len(days)} day(s) in {store.uri('')}, {days[0]} .. {days[-1]}", err=True)
