"""The command group and the error handling every sub-command shares."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from audit_pipeline.errors import AuditPipelineError, ConfigError

F = TypeVar("F", bound=Callable[..., Any])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None, help="YAML configuration (default: $AUDIT_CONFIG or ./audit_pipeline.yaml)."
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Export, forward, retain and verify HelloJohn audit logs."""
    ctx.obj = {"config_path": config_path}


def friendly_errors(fn: F) -> F:
    """Turn our errors into one clear line on stderr: exit 2 for configuration, 1 otherwise."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except AuditPipelineError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def config_path(ctx: click.Context) -> str | None:
    obj = ctx.find_root().obj or {}
    value: str | None = obj.get("config_path")
    return value
