"""``audit-pipeline demo`` and ``audit-pipeline export-day``: run the daily export job."""

from __future__ import annotations

import datetime as dt
import os

import click

from audit_pipeline.cli.app import config_path, friendly_errors, main
from audit_pipeline.errors import AuditPipelineError, ConfigError
from audit_pipeline.settings import load_settings


def _run_export_job(days: list[dt.date], config: str | None, force: bool = False) -> None:
    """Materialize the daily export assets (and their checks) for each day, in process."""
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from audit_pipeline.defs.exports import audit_logs_daily_export, audit_logs_table, export_checks
    from audit_pipeline.defs.resources import AuditPipelineResource

    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    for day in days:
        result = dg.materialize(
            [audit_logs_daily_export, audit_logs_table, *export_checks],
            partition_key=day.isoformat(),
            resources={"audit": AuditPipelineResource(config_path=config)},
            instance=instance,
            raise_on_error=False,
            run_config={
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                **({"ops": {"audit_logs_daily_export": {"config": {"force": True}}}} if force else {}),
            },
        )
        if not result.success:
            failure = next((e for e in result.all_events if e.is_step_failure and e.step_failure_data), None)
            data = failure.step_failure_data if failure else None
            if data and data.user_failure_data and data.user_failure_data.description:
                message = data.user_failure_data.description
            elif data and data.error:
                message = (data.error.cause or data.error).message.strip()
            else:
                message = "see the run log"
            raise AuditPipelineError(f"export of {day} failed: {message}")
        failed_checks = [c for c in result.get_asset_check_evaluations() if not c.passed]
        if failed_checks:
            raise AuditPipelineError(
                f"export of {day} published, but checks failed: " + ", ".join(f"{c.asset_key.to_user_string()}:{c.check_name}" for c in failed_checks)
            )
        click.echo(f"{day}: ok")


@main.command()
@click.pass_context
@friendly_errors
def demo(ctx: click.Context) -> None:
    """Export the embedded demo database's days to the export folder and print where the files are."""
    from audit_pipeline.sources.demo import DEMO_DAYS

    settings = load_settings(config_path(ctx))
    if not settings.uses_demo_source:
        click.echo("note: AUDIT_DATABASE_URL is set, so the demo exports those days from your database", err=True)
    _run_export_job(list(DEMO_DAYS), config_path(ctx))
    from audit_pipeline.storage import ObjectStore

    store = ObjectStore.from_settings(settings.export)
    click.echo(f"\nExports are in {store.uri('')}:")
    for fmt in ("csv", "ndjson", "parquet"):
        for key in store.list(fmt):
            click.echo(f"  {store.uri(key)}")


def _parse_day(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{name} must be a day as YYYY-MM-DD, got {value!r}") from None


@main.command("export-day")
@click.argument("day")
@click.option("--to", "last", default=None, help="Last day of a range (inclusive).")
@click.option("--force", is_flag=True, help="Export days whose database rows retention deleted (after restoring them); recorded in the manifest.")
@click.pass_context
@friendly_errors
def export_day_command(ctx: click.Context, day: str, last: str | None, force: bool) -> None:
    """Materialize the daily export for DAY (YYYY-MM-DD), or DAY..--to, with its checks."""
    first = _parse_day(day, "DAY")
    end = _parse_day(last, "--to") if last else first
    if end < first:
        raise ConfigError(f"--to {end} is before DAY {first}")
    days = [first + dt.timedelta(days=i) for i in range((end - first).days + 1)]
    _run_export_job(days, config_path(ctx), force=force)
