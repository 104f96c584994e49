"""``audit-pipeline export``: one export of any range and event types, now, like HelloJohn's export API."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import BinaryIO

import click

from audit_pipeline.cli.app import config_path, friendly_errors, main
from audit_pipeline.config.settings import load_settings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.core.isotime import format_instant
from audit_pipeline.exports.adhoc import RangeExport, check_output_path, output_file, spooled_to, write_range, writes_in_place
from audit_pipeline.exports.adhoc_request import parse_range_request
from audit_pipeline.sources.base import TimeRange
from audit_pipeline.sources.registry import open_source


class _ProgressLine:
    """``exported N events, up to T (P%)`` on a terminal's stderr, redrawn at most twice a second."""

    def __init__(self, time_range: TimeRange) -> None:
        self.time_range = time_range
        self._last_draw = 0.0
        self._drawn = False

    def __call__(self, rows: int, last: dt.datetime | None) -> None:
        now = time.monotonic()
        if now - self._last_draw < 0.5:
            return
        self._last_draw = now
        span = (self.time_range.end - self.time_range.start).total_seconds()
        done = "" if last is None or span <= 0 else f" ({min(100.0, 100 * (last - self.time_range.start).total_seconds() / span):.0f}% of the range)"
        up_to = f", up to {format_instant(last)}" if last else ""
        click.echo(f"\rexported {rows:,} events{up_to}{done}\x1b[K", err=True, nl=False)
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            click.echo("", err=True)


@main.command("export")
@click.option(
    "--format", "fmt", default="csv", show_default=True, metavar="csv|ndjson|json|parquet", help="Output format; json is NDJSON, as in HelloJohn's export API."
)
@click.option("--from", "start", required=True, metavar="TIME", help="Start, inclusive: ISO 8601 with an offset or Z, e.g. 2024-01-01T00:00:00Z.")
@click.option("--to", "end", required=True, metavar="TIME", help="End, exclusive: events strictly before it (2024-02-01T00:00:00Z for all of January).")
@click.option("--type", "types", multiple=True, metavar="PATTERN", help="Event type or glob, e.g. user.login or 'user.*'; repeat for several.")
@click.option("--tenant", "tenants", multiple=True, metavar="ID", help="Only this tenant (a glob is accepted); repeat for several.")
@click.option("--organization", "organizations", multiple=True, metavar="ID", help="Only this organization id; repeat for several.")
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    metavar="FILE|-",
    help="File to write (replaced only once complete; a FIFO or device is written in place, a symlink followed), or - for standard output.",
)
@click.pass_context
@friendly_errors
def export_range_command(
    ctx: click.Context,
    fmt: str,
    start: str,
    end: str,
    types: tuple[str, ...],
    tenants: tuple[str, ...],
    organizations: tuple[str, ...],
    output: str,
) -> None:
    """Export the events of [--from, --to) matching the filters, oldest first, from the configured source.

    The columns, cells and line ends are those of the daily exports, so a whole UTC day
    exported here equals that day's daily file.
    """
    request = parse_range_request(start, end, fmt=fmt, types=types, tenants=tenants, organizations=organizations)
    fmt = request.fmt
    to_stdout = output == "-"
    stdout = sys.stdout.buffer
    if to_stdout and fmt == "parquet" and stdout.isatty():
        raise ConfigError("--format parquet is binary; give --output FILE or pipe standard output into a file or program")
    path: Path | None = None if to_stdout else check_output_path(output)
    settings = load_settings(config_path(ctx))
    time_range = request.time_range
    progress = _ProgressLine(time_range) if sys.stderr.isatty() else None
    with open_source(settings) as source:
        source.check()

        def run(out: BinaryIO) -> RangeExport:
            return write_range(
                source,
                time_range,
                fmt,
                out,
                event_filter=request.event_filter,
                csv_formula_protection=settings.export.csv_formula_protection,
                parquet_row_group_rows=settings.export.parquet_row_group_rows,
                progress=progress,
            )

        try:
            if path is not None and fmt == "parquet" and writes_in_place(path):
                with output_file(path) as stream, spooled_to(stream) as handle:  # a FIFO or device, like a pipe
                    result = run(handle)
            elif path is not None:
                with output_file(path) as handle:
                    result = run(handle)
            elif fmt == "parquet":
                with spooled_to(stdout) as handle:
                    result = run(handle)
            else:
                result = run(stdout)
                stdout.flush()
        except BrokenPipeError:
            # The reader went away (e.g. `| head`); stop quietly, as other Unix tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        finally:
            if progress is not None:
                progress.finish()
    if path is not None or progress is not None:
        where = "standard output" if path is None else str(path)
        click.echo(f"exported {result.rows:,} events from {source.description} to {where}", err=True)
