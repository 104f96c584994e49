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

from audit_pipeline.cli.app import EXIT_USAGE, config_path, friendly_errors, main
from audit_pipeline.errors import ConfigError
from audit_pipeline.redaction import MASK, redact
from audit_pipeline.settings import Settings, load_settings


def _plain(value: Any) -> Any:
    """The settings as YAML-ready values: secrets masked, days and durations as written."""
    if isinstance(value, SecretStr):
        return MASK
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


def resolved_yaml(settings: Settings) -> str:
    """The configuration as loaded (defaults filled in, ``${VAR}`` resolved), with every secret as ``***``."""
    text = yaml.safe_dump(_plain(settings), sort_keys=False, allow_unicode=True, default_flow_style=False)
    return redact(text)


def _checks(settings: Settings) -> list[tuple[str, Callable[[], object]]]:
    from audit_pipeline.defs.executor import run_executor
    from audit_pipeline.forwarding.configured import configured_sinks
    from audit_pipeline.integrity.config import integrity_settings
    from audit_pipeline.integrity.signing import load_signer
    from audit_pipeline.retention.policy import retention_policy

    def sinks() -> None:
        for configured in configured_sinks(settings, include_disabled=True):
            configured.sink.close()

    return [
        ("sinks", sinks),
        ("retention", lambda: retention_policy(settings)),
        ("integrity", lambda: load_signer(integrity_settings(settings))),
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
@click.pass_context
@friendly_errors
def check_command(ctx: click.Context) -> None:
    """Report every problem at once (exit 2), or print the resolved configuration with secrets as ***."""
    settings = load_settings(config_path(ctx))
    problems = configuration_problems(settings)
    if problems:
        for problem in problems:
            click.echo(f"error: {redact(problem)}", err=True)
        raise SystemExit(EXIT_USAGE)
    if settings.uses_demo_source:
        click.echo("note: no source is configured, so runs read the embedded demo database", err=True)
    click.echo(resolved_yaml(settings), nl=False)
    click.echo("configuration OK", err=True)


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
    from audit_pipeline.config_docs import reference_markdown

    page = reference_markdown()
    if target is None:
        click.echo(page, nl=False)
    else:
        target.write_text(page, encoding="utf-8")
        click.echo(f"wrote {target}", err=True)
