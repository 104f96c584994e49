"""The command group and the error handling every sub-command shares.

Exit codes: 0 done; 1 an operation failed (one line naming what failed); 2 the user's
input is wrong (a setting, an argument, a day outside the partitions), one line naming it.
A traceback is only printed with ``--verbose``.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click

from audit_pipeline import __version__
from audit_pipeline.core.errors import AuditPipelineError, ConfigError, first_line
from audit_pipeline.core.redaction import install_log_redaction, redact

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED = 1
EXIT_USAGE = 2


def _fail(message: object, code: int) -> NoReturn:
    """Print the error, one line per problem (a configuration error lists each key at fault), and exit."""
    lines = [line.strip() for line in redact(message).splitlines() if line.strip()] or ["(no message)"]
    for line in lines:
        click.echo(line if line.startswith("error:") else f"error: {line}", err=True)
    sys.exit(code)


def verbose() -> bool:
    ctx = click.get_current_context(silent=True)
    obj = (ctx.find_root().obj or {}) if ctx else {}
    return bool(obj.get("verbose"))


def quiet_dagster() -> None:
    """Keep Dagster's own log and warnings off the terminal unless ``--verbose``."""
    install_log_redaction(logging.getLogger(), logging.getLogger("dagster"))
    if verbose():
        return
    logging.getLogger("dagster").setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore")


#: Which module registers each sub-command: only the one that runs is imported, so ``forward``
#: does not load DuckDB, the exporters or the retention planner (about 50 MB and a second of start).
COMMAND_MODULES = {
    "config": "config",
    "days": "days",
    "deadletters": "forward",
    "demo": "exports",
    "export": "adhoc_export",
    "export-day": "exports",
    "forward": "forward",
    "prove": "prove",
    "query": "query",
    "rechain": "verify",
    "relink": "verify",
    "retention": "retention",
    "sinks": "sinks",
    "verify": "verify",
    "verify-proof": "prove",
}


class AuditPipelineGroup(click.Group):
    """Turns every failure into one line: usage mistakes exit 2, failed operations exit 1.

    Sub-commands are imported when they are looked up (:data:`COMMAND_MODULES`)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(f"audit_pipeline.cli.{module}")
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in sorted(set(COMMAND_MODULES.values())):
            importlib.import_module(f"audit_pipeline.cli.{module}")
        return super().list_commands(ctx)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, *rest: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        argv = list(args) if args is not None else sys.argv[1:]
        try:
            result = super().main(args, prog_name, *rest, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except click.UsageError as exc:
            hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
            _fail(f"{exc.format_message()}{hint}", EXIT_USAGE)
        except click.ClickException as exc:
            _fail(exc.format_message(), EXIT_USAGE)
        except ConfigError as exc:
            _fail(exc, EXIT_USAGE)
        except AuditPipelineError as exc:
            _fail(exc, EXIT_FAILED)
        except SystemExit:
            raise
        except Exception as exc:
            if "--verbose" in argv or "-v" in argv:
                click.echo(redact("".join(traceback.format_exception(exc))), err=True)
            _fail(f"{_operation(exc)} failed: {type(exc).__name__}: {first_line(exc, '(no message)')} (run with --verbose for details)", EXIT_FAILED)
        if isinstance(result, int) and result:
            sys.exit(result)
        return result


def _operation(exc: BaseException) -> str:
    ctx = click.get_current_context(silent=True)
    name = ctx.info_name if ctx else None
    return f"audit-pipeline {name}" if name and name != "audit-pipeline" else "the command"


@click.group(cls=AuditPipelineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None, help="YAML configuration (default: $AUDIT_CONFIG or ./audit_pipeline.yaml)."
)
@click.option("--verbose", "-v", is_flag=True, help="Show Dagster's own log and tracebacks.")
@click.version_option(__version__, "--version", prog_name="audit-pipeline", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Export, forward, retain and verify HelloJohn audit logs."""
    ctx.obj = {"config_path": config_path, "verbose": verbose}
    install_log_redaction()


def friendly_errors(fn: F) -> F:
    """Turn our errors into one clear line on stderr: exit 2 for configuration, 1 otherwise."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            _fail(exc, EXIT_USAGE)
        except AuditPipelineError as exc:
            _fail(exc, EXIT_FAILED)

    return wrapper  # type: ignore[return-value]


def config_path(ctx: click.Context) -> str | None:
    obj = ctx.find_root().obj or {}
    value: str | None = obj.get("config_path")
    return value
