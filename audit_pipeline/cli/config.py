"""``audit-pipeline config check|schema|docs``: find every configuration problem before any run.

``check`` loads the file as every command does, then asks each part that interprets the
settings (sinks, retention, integrity keys, the Dagster executor) to check its own rules, so
a contradiction such as ``retention.database`` without a deleting connection is reported
now instead of at 03:00.  Exit 2 with one line per problem, or 0 with the resolved
configuration, secrets shown as ``***``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import BaseModel, SecretStr

from audit_pipeline.cli.app import EXIT_FAILED, EXIT_USAGE, config_path, friendly_errors, main
from audit_pipeline.config.settings import Settings, load_settings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.core.redaction import MASK, redact


def _plain(value: Any) -> Any:
    """The settings as YAML-ready values: secrets masked, days and durations as written.

    A database URL held as a secret (``source.database_url``) shows with only its password
    masked, so the user can see which host, port, role and database are configured."""
    if isinstance(value, SecretStr):
        return _database_url(value.get_secret_value()) or MASK
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date | Path):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _database_url(text: str) -> str | None:
    """``postgresql://role:***@host:5432/db`` for a database URL (password and credential query values masked), else None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not text.lower().startswith(("postgres", "sqlite", "mysql")) or "://" not in text:
        return None
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError):
        return None
    query = {k: (MASK if any(w in k.lower() for w in ("pass", "key", "secret", "token")) else v) for k, v in parsed.query.items()}
    shown = parsed.set(query=query).render_as_string(hide_password=True)
    return redact(shown).replace("%2A%2A%2A", MASK)


def resolved_yaml(settings: Settings) -> str:
    """The configuration as loaded (defaults filled in, ``${VAR}`` resolved), with every secret as ``***``."""
    text = yaml.safe_dump(_plain(settings), sort_keys=False, allow_unicode=True, default_flow_style=False)
    return redact(text)


def _checks(settings: Settings) -> list[tuple[str, Callable[[], object]]]:
    from audit_pipeline.defs.executor import run_executor
    from audit_pipeline.forwarding.configured import configured_sinks
    from audit_pipeline.integrity.signing import load_signer
    from audit_pipeline.retention.policy import retention_policy

    def sinks() -> None:
        for configured in configured_sinks(settings, include_disabled=True):
            configured.sink.close()

    return [
        ("sinks", sinks),
        ("retention", lambda: retention_policy(settings)),
        ("integrity", lambda: load_signer(settings.integrity)),
        ("executor", run_executor),
    ]


def configuration_problems(settings: Settings) -> list[str]:
    """Every rule beyond the types that the loaded settings break, one line each."""
    problems: list[str] = []
    for _, check in _checks(settings):
        try:
            check()
        except ConfigError as exc:
            problems += [line for line in str(exc).splitlines() if line.strip()]
    return problems


@main.group("config")
def config_group() -> None:
    """Check the configuration, or print its JSON Schema or reference."""


@config_group.command("check")
@click.option(
    "--connect",
    is_flag=True,
    help="Also reach the source, the export store, the state database and every sink's health endpoint (one line each; exit 1 if any fails).",
)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, help="Seconds each network check may take.")
@click.pass_context
@friendly_errors
def check_command(ctx: click.Context, connect: bool, timeout: float) -> None:
    """Report every problem at once (exit 2), or print the resolved configuration with secrets as ***."""
    settings = load_settings(config_path(ctx))
    problems = configuration_problems(settings)
    if problems:
        for problem in problems:
            click.echo(f"error: {redact(problem)}", err=True)
        raise SystemExit(EXIT_USAGE)
    if settings.uses_demo_source:
        click.echo("note: no source is configured, so runs read the embedded demo database", err=True)
    _instance_note(settings)
    if connect:
        _connect(settings, timeout)
        return
    click.echo(resolved_yaml(settings), nl=False)
    click.echo("configuration OK", err=True)


def _instance_note(settings: Settings) -> None:
    """Say when the Dagster instance here recorded its latest export in another store (its history is the UI's)."""
    from audit_pipeline.cli.instance import existing_instance_note

    try:
        note = existing_instance_note(settings)
    except Exception as exc:  # a note only: an unreadable instance is not the configuration's problem
        note = f"could not read the Dagster instance's history ({type(exc).__name__})"
    if note:
        click.echo(f"note: {redact(note)}", err=True)


def _connect(settings: Settings, timeout: float) -> None:
    """One line per connection check on stdout as each finishes; exit 1 when any failed."""
    from audit_pipeline.checks.connect import connection_checks

    failed = warned = passed = 0
    for check in connection_checks(settings, timeout=timeout):
        click.echo(check.line())
        failed += check.status == "FAIL"
        warned += check.status == "warn"
        passed += check.status == "ok"
    summary = f"{passed} check(s) passed, {warned} warning(s), {failed} failed"
    if failed:
        click.echo(f"error: {summary}; fix the settings named above", err=True)
        raise SystemExit(EXIT_FAILED)
    click.echo(f"configuration OK and reachable: {summary}", err=True)


def json_schema() -> dict[str, Any]:
    schema = Settings.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "audit_pipeline configuration"
    return schema


@config_group.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of the YAML file (for editors and CI)."""
    click.echo(json.dumps(json_schema(), indent=2, sort_keys=False))


@config_group.command("docs")
@click.option("--write", "target", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the page here instead of printing it.")
def docs_command(target: Path | None) -> None:
    """Print (or write) docs/configuration.md, generated from the settings model."""
    from audit_pipeline.config.reference_docs import reference_markdown

    page = reference_markdown()
    if target is None:
        click.echo(page, nl=False)
    else:
        target.write_text(page, encoding="utf-8")
        click.echo(f"wrote {target}", err=True)
