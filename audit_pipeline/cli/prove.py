"""``audit-pipeline prove`` and ``verify-proof``: one event's offline proof, and checking it with only the public key."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from audit_pipeline.cli.app import config_path, friendly_errors, main
from audit_pipeline.cli.options import parse_optional_day
from audit_pipeline.core.errors import ConfigError


def _write(bundle: dict[str, object], output: str | None) -> None:
    text = json.dumps(bundle, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if output in (None, "-"):
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"-o {output}: cannot write the bundle: {exc.strerror}") from None
    click.echo(f"wrote {output} ({len(text.encode())} bytes)", err=True)


@main.command("prove")
@click.argument("event_id", required=False)
@click.option("--day", default=None, metavar="DAY", help="The event's day (default: search the log's days, newest first).")
@click.option("--consistency", "old_checkpoint", default=None, type=click.Path(dir_okay=False), help="Instead: prove the log extends this earlier checkpoint.")
@click.option("-o", "--output", default=None, metavar="FILE", help="Write the bundle here (default: standard output).")
@click.pass_context
@friendly_errors
def prove_command(ctx: click.Context, event_id: str | None, day: str | None, old_checkpoint: str | None, output: str | None) -> None:
    """Write an offline proof bundle (JSON) that EVENT_ID is in the sealed archive.

    The bundle holds the event as exported, its leaf index, the inclusion path, the checkpoint
    of its day and the consistency path to the newest checkpoint; ``verify-proof`` checks it
    with the public key alone.  With ``--consistency OLD_CHECKPOINT`` the bundle proves instead
    that today's log extends that checkpoint.
    """
    from audit_pipeline.config.settings import load_settings
    from audit_pipeline.integrity.proofs import prove_consistency, prove_event
    from audit_pipeline.storage.object_store import ObjectStore

    if (event_id is None) == (old_checkpoint is None):
        raise ConfigError("give either EVENT_ID or --consistency OLD_CHECKPOINT")
    settings = load_settings(config_path(ctx))
    store = ObjectStore.from_settings(settings.export)
    if old_checkpoint is not None:
        try:
            note = Path(old_checkpoint).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--consistency {old_checkpoint}: cannot read the checkpoint: {exc}") from None
        _write(prove_consistency(store, note), output)
        return
    assert event_id is not None
    _write(prove_event(store, event_id, parse_optional_day(day, "--day")), output)


@main.command("verify-proof")
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--public-key", required=True, type=click.Path(dir_okay=False), help="The log's Ed25519 public key (PEM, or a note key name+hash+base64).")
@click.option("--known-checkpoint", multiple=True, type=click.Path(dir_okay=False), help="A checkpoint you hold from earlier: a smaller log fails.")
@click.option(
    "--tsa-ca", default=None, type=click.Path(dir_okay=False), help="The TSA's root certificates (PEM): the checkpoint's RFC 3161 timestamp must verify."
)
def verify_proof_command(bundle: str, public_key: str, known_checkpoint: tuple[str, ...], tsa_ca: str | None) -> None:
    """Check a ``prove`` bundle offline: no archive, no database, no configuration.

    Prints one line; exits 0 when the bundle proves what it says, 1 otherwise.
    """
    from audit_pipeline.integrity.proof_verify import ProofError, verify_file

    try:
        click.echo(verify_file(Path(bundle), Path(public_key), tuple(Path(p) for p in known_checkpoint), Path(tsa_ca) if tsa_ca else None))
    except ProofError as exc:
        click.echo(f"FAILED: {exc}", err=True)
        sys.exit(1)
