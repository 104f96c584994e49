"""``audit-pipeline demo`` and ``audit-pipeline export-day``: run the daily export job."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from audit_pipeline.cli.app import config_path, friendly_errors, main, quiet_dagster, verbose
from audit_pipeline.cli.instance import dagster_instance, recorded_store_note
from audit_pipeline.cli.options import parse_day
from audit_pipeline.config.partition_days import check_partition_day
from audit_pipeline.config.settings import Settings, load_settings
from audit_pipeline.core.errors import AuditPipelineError, ConfigError

if TYPE_CHECKING:
    import dagster as dg


def _failure_message(result: dg.ExecuteInProcessResult) -> str:  # the last failure's message, as Dagster recorded it
    failure = next((e for e in result.all_events if e.is_step_failure and e.step_failure_data), None)
    data = failure.step_failure_data if failure else None
    if data and data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description
    if data and data.error:
        return (data.error.cause or data.error).message.strip()
    return "see the run log"


def _preflight(settings: Settings) -> None:
    """Refuse before any Dagster run exists when the source or the store cannot be reached.

    A run that planned a day and failed shows that day Failed in the UI even though it published nothing and
    the day in the store verifies OK (Dagster 1.13 reads a partition's status from the latest attempt), so a
    wrong role, database, port or bucket is said here, in one line, and no run is recorded.
    """
    from audit_pipeline.checks.preflight import export_preflight
    from audit_pipeline.core.redaction import redact

    failed = export_preflight(settings)
    if failed:
        reasons = "; ".join(f"{c.what}: {c.detail}" + (f" (fix {c.setting})" if c.setting else "") for c in failed)
        raise AuditPipelineError(redact(f"{reasons}; nothing exported and no run started, so the UI still shows each day as the store holds it"))


def _run_export_job(days: list[dt.date], config: str | None, force: bool = False, settings: Settings | None = None) -> None:
    """Materialize the daily export assets (and their checks) for each day, in process."""
    settings = settings or load_settings(config)
    for day in days:
        check_partition_day(day, settings)
    _preflight(settings)
    quiet_dagster()
    import dagster as dg

    from audit_pipeline.defs.exports import build_export_definitions
    from audit_pipeline.defs.partitions import daily_partitions_from
    from audit_pipeline.defs.resources import AuditPipelineResource

    if settings.uses_demo_source:
        click.echo("note: no source is configured, so the embedded demo database is exported (set source: or AUDIT_DATABASE_URL)", err=True)
    exports = build_export_definitions(daily_partitions_from(settings.export.partition_start), source_type=settings.source_kind)
    instance = dagster_instance()
    note = recorded_store_note(instance, settings)
    if note:
        click.echo(f"note: {note}", err=True)
    log_level = "INFO" if verbose() else "CRITICAL"
    for day in days:
        result = dg.materialize(
            [exports.daily_export, exports.table, *exports.checks],
            partition_key=day.isoformat(),
            resources={"audit": AuditPipelineResource(config_path=config)},
            instance=instance,
            raise_on_error=False,
            run_config={
                "loggers": {"console": {"config": {"log_level": log_level}}},
                **({"ops": {"audit_logs_daily_export": {"config": {"force": True}}}} if force else {}),
            },
        )
        if not result.success:
            raise AuditPipelineError(f"export of {day} failed: {_failure_message(result)}")
        failed_checks = [c for c in result.get_asset_check_evaluations() if not c.passed]
        if failed_checks:
            raise AuditPipelineError(
                f"export of {day} published, but checks failed: " + ", ".join(f"{c.asset_key.to_user_string()}:{c.check_name}" for c in failed_checks)
            )
        click.echo(f"{day}: ok")


def _instance_note() -> str:
    if os.environ.get("DAGSTER_HOME"):
        return f"runs recorded in the Dagster instance at $DAGSTER_HOME ({os.environ['DAGSTER_HOME']})"
    if Path("dagster.yaml").is_file():
        return f"runs recorded in the Dagster instance of {Path('dagster.yaml').resolve()}: `dagster dev` started here shows them"
    return "runs not recorded (no DAGSTER_HOME and no ./dagster.yaml here): run it from the repository to see them in `dagster dev`"


@main.command()
@click.pass_context
@friendly_errors
def demo(ctx: click.Context) -> None:
    """Export the embedded demo database's days, list the files and manifests, and say what to try next."""
    from audit_pipeline.core.layout import MANIFEST_PREFIX
    from audit_pipeline.sources.demo import DEMO_DAYS
    from audit_pipeline.storage.object_store import ObjectStore

    settings = load_settings(config_path(ctx))
    if not settings.uses_demo_source:
        click.echo(f"note: source.type is {settings.source_kind}, so the demo exports its days from that source", err=True)
    _run_export_job(list(DEMO_DAYS), config_path(ctx), settings=settings)
    store = ObjectStore.from_settings(settings.export)
    click.echo(f"\nExports are in {store.uri('')}:")
    for fmt in ("csv", "ndjson", "parquet"):
        for key in store.list(fmt):
            click.echo(f"  {store.uri(key)}")
    manifests = [key for key in store.list(MANIFEST_PREFIX) if key.endswith(".json")]
    if manifests:
        click.echo("Manifests (hashes, row counts and the entry chain of each day):")
        for key in manifests:
            click.echo(f"  {store.uri(key)}")
    first, last = DEMO_DAYS[0], DEMO_DAYS[-1]
    click.echo(f"\n{_instance_note()}.")
    click.echo(
        "\nNext steps:\n"
        "  audit-pipeline days                      what is exported, per format, with row counts\n"
        f"  audit-pipeline verify                    check every day against its manifest and chain\n"
        f"  audit-pipeline export --from {first}T00:00:00Z --to {last}T00:00:00Z --type 'user.*' -o users.csv\n"
        "  dagster dev                              the same assets, checks and schedules in the UI\n"
        "  audit-pipeline config check              before pointing it at your database (source: / AUDIT_DATABASE_URL)"
    )


@main.command("export-day")
@click.argument("day")
@click.option("--to", "last", default=None, help="Last day of a range (inclusive).")
@click.option("--force", is_flag=True, help="Export days whose database rows retention deleted (after restoring them); recorded in the manifest.")
@click.pass_context
@friendly_errors
def export_day_command(ctx: click.Context, day: str, last: str | None, force: bool) -> None:
    """Materialize the daily export for DAY (YYYY-MM-DD), or DAY..--to, with its checks."""
    first = parse_day(day, "DAY")
    end = parse_day(last, "--to") if last else first
    if end < first:
        raise ConfigError(f"--to {end} is before DAY {first}")
    days = [first + dt.timedelta(days=i) for i in range((end - first).days + 1)]
    _run_export_job(days, config_path(ctx), force=force)
