"""``audit-pipeline verify``, ``rechain`` and ``relink``: check the exports and repair the chain on purpose."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from audit_pipeline.cli.app import config_path, friendly_errors, main
from audit_pipeline.cli.options import parse_optional_day
from audit_pipeline.config.settings import load_settings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.integrity.head import seen_head
from audit_pipeline.integrity.report import DayReport
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.integrity.verify import Verifier
from audit_pipeline.storage.object_store import ObjectStore


def _echo_report(report: DayReport) -> None:
    rows = f"{report.rows} events" if report.rows is not None else "-"
    notes = "; ".join(report.notes)
    click.echo(f"{report.day}  {report.status:<7} {rows:<14} {notes}".rstrip())
    for problem in report.problems:
        click.echo(f"    - {problem.message}")


@main.command("verify")
@click.option("--from", "first", default=None, metavar="DAY", help="First day to check (default: the earliest exported day).")
@click.option("--to", "last", default=None, metavar="DAY", help="Last day to check (default: the latest exported day).")
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Trusted Ed25519 public key (PEM); repeat for rotated keys. Unsigned manifests then fail (as they do from the first signed day on whenever a key is configured).",
)
@click.pass_context
@friendly_errors
def verify_command(ctx: click.Context, first: str | None, last: str | None, public_keys: tuple[str, ...]) -> None:
    """Check every exported day against its manifest, signature and entry chain, reading only the object store;
    without --to also the newest head and the transparency log (each daily checkpoint signed and extended by the next).

    Prints one line per day (OK, RETIRED or FAILED, with what is wrong); exits 0 only when all is well.
    """
    start, end = parse_optional_day(first, "--from"), parse_optional_day(last, "--to")
    if start and end and end < start:
        raise ConfigError(f"--to {end} is before --from {start}")
    settings = load_settings(config_path(ctx))
    keyring = Keyring.build(settings.integrity, [Path(p) for p in public_keys])
    for warning in keyring.warnings:
        click.echo(f"warning: {warning}", err=True)
    store = ObjectStore.from_settings(settings.export)
    verifier = Verifier(store, keyring)
    head = verifier.check_head(seen_head(settings, store)) if end is None else None
    config = settings.integrity
    # The transparency log as it is now, like the head.
    log = verifier.check_log(config.timestamp_ca_file, bool(config.timestamp_url)) if end is None else None
    reports = verifier.verify_range(start, end, head)
    if not reports:
        click.echo(f"nothing to verify: no manifests or exports in {store.uri('')} (check AUDIT_EXPORT_URL / export.url)", err=True)
        sys.exit(1)
    for report in reports:
        _echo_report(report)
    if head is not None:
        for note in head.notes:
            click.echo(note)
        for problem in head.problems:
            click.echo(f"HEAD FAILED: {problem}")
    if log is not None:
        for note in log.notes:
            click.echo(note)
        for problem in log.problems:
            click.echo(f"LOG FAILED: {problem}")
    failed = sum(1 for r in reports if not r.ok)
    retired = sum(1 for r in reports if r.ok and r.retired)
    click.echo(f"\n{len(reports) - failed - retired} OK, {retired} retired, {failed} failed, of {len(reports)} days in {store.uri('')}")
    sys.exit(1 if failed or (head is not None and not head.ok) or (log is not None and not log.ok) else 0)


@main.command("rechain")
@click.option("--from", "first", required=True, metavar="DAY", help="First day to export again.")
@click.option("--to", "last", default=None, metavar="DAY", help="Last day to export again (default: --from).")
@click.option("--reason", required=True, help="Why the published events change; recorded in the manifest.")
@click.pass_context
@friendly_errors
def rechain_command(ctx: click.Context, first: str, last: str | None, reason: str) -> None:
    """Export days again although their events changed, record REASON, and re-link every later day.

    A plain export refuses to replace a day whose events differ from its manifest; this is
    the explicit way to accept the change (late rows, a corrected source, restored tampering).
    """
    from audit_pipeline.recipes.sealed_export import export_sealed_day
    from audit_pipeline.sources.registry import open_source

    start = parse_optional_day(first, "--from")
    end = parse_optional_day(last, "--to") or start
    assert start is not None and end is not None
    if end < start:
        raise ConfigError(f"--to {end} is before --from {start}")
    if not reason.strip():
        raise ConfigError("--reason must say why the events change; it is recorded in the manifest")
    settings = load_settings(config_path(ctx))
    if not settings.integrity.enabled:
        raise ConfigError("integrity.enabled is false: there is no chain to rechain")
    store = ObjectStore.from_settings(settings.export)
    day = start
    while day <= end:
        # The export's own recipe: it waits for a running export of the same day (the day lock) before reading it.
        sealed = export_sealed_day(
            settings, store, day, lambda: open_source(settings), rechain_reason=reason.strip(), warn=lambda message: click.echo(f"warning: {message}", err=True)
        )
        click.echo(sealed.summary)
        day += dt.timedelta(days=1)


@main.command("relink")
@click.option("--from", "first", required=True, metavar="DAY", help="First day whose link to its previous day is checked.")
@click.pass_context
@friendly_errors
def relink_command(ctx: click.Context, first: str) -> None:
    """Re-link DAY and every later day to the day before it, from the published objects.

    Events are not changed: each day is re-hashed from an object that still matches its own
    manifest.  Exports do this by themselves; run it after an interrupted backfill.
    """
    from audit_pipeline.recipes.sealed_export import manifest_days, relink_days

    start = parse_optional_day(first, "--from")
    assert start is not None
    settings = load_settings(config_path(ctx))
    store = ObjectStore.from_settings(settings.export)
    last = manifest_days(store)
    if not last or last[-1] < start:
        click.echo(f"no manifests from {start} on in {store.uri('')}")
        return
    lines = relink_days(settings, store, start)  # under the day locks: an export of one of these days waits, and so does this
    for line in lines:
        click.echo(line)
    click.echo(f"{len(lines)} manifest(s) re-linked" if lines else f"every day from {start} on is already linked")
