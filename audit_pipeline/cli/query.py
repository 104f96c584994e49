"""``audit-pipeline query "SQL"``: answer a question from the Parquet archive in one command."""

from __future__ import annotations

import sys

import click

from audit_pipeline.cli.app import config_path, friendly_errors, main
from audit_pipeline.cli.options import parse_optional_day
from audit_pipeline.config.settings import load_settings
from audit_pipeline.core.errors import ConfigError


@main.command("query")
@click.argument("sql")
@click.option("--from", "first", default=None, metavar="YYYY-MM-DD", help="Only days from this one (the view audit_logs is limited to them).")
@click.option("--to", "last", default=None, metavar="YYYY-MM-DD", help="Only days up to this one, inclusive.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "ndjson", "parquet"]),
    default="table",
    show_default=True,
    help="Aligned table for a terminal, or a file format.",
)
@click.option(
    "--output",
    "-o",
    default=None,
    metavar="PATH",
    help="Write to PATH instead of stdout: a file complete or not at all; a FIFO or device in place; a symlink is followed.",
)
@click.option(
    "--table-rows",
    default=None,
    type=click.IntRange(min=0),
    metavar="N",
    help="The most rows --format table shows (10,000 unless given); a larger result is refused: use --format csv.",
)
@click.pass_context
@friendly_errors
def query_command(ctx: click.Context, sql: str, first: str | None, last: str | None, output_format: str, output: str | None, table_rows: int | None) -> None:
    """Run one SQL statement over the Parquet archive, seen as the view audit_logs (with a date column).

    The query is read-only: it reads audit_logs and nothing else (no COPY TO, ATTACH, other files,
    extensions or settings).

    \b
    Example:
      audit-pipeline query "SELECT country, count(*) FROM audit_logs
        WHERE date BETWEEN '2024-03-01' AND '2024-03-07' AND result = 'failure'
        GROUP BY country ORDER BY 2 DESC"
    """
    from audit_pipeline.analysis.archive import QueryError
    from audit_pipeline.analysis.query import TABLE_ROWS, run_query
    from audit_pipeline.storage.object_store import ObjectStore

    start, end = parse_optional_day(first, "--from"), parse_optional_day(last, "--to")
    if start and end and end < start:
        raise ConfigError(f"--to {end} is before --from {start}")
    if output_format == "parquet" and output in (None, "-") and sys.stdout.isatty():
        raise ConfigError("--format parquet writes binary data: give --output PATH or redirect stdout")
    store = ObjectStore.from_settings(load_settings(config_path(ctx)).export)
    try:
        run_query(store, sql, output_format=output_format, output=output, first=start, last=end, table_rows=TABLE_ROWS if table_rows is None else table_rows)  # type: ignore[arg-type]
    except QueryError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
