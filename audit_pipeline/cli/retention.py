"""``audit-pipeline retention [--dry-run]``: apply the ``retention:`` policy once, or list what it would delete.

Exit codes: 0 done (days kept because they are not safely exported are reported, not
failures); 1 a deletion or a check failed (rerun it: every step is idempotent); 2 a
configuration error, such as a malformed policy.
"""

from __future__ import annotations

import click

from audit_pipeline.cli.app import config_path, friendly_errors, main
from audit_pipeline.cli.options import parse_optional_day
from audit_pipeline.config.settings import load_settings
from audit_pipeline.retention.plan import Figures, RetentionPlan
from audit_pipeline.retention.run import RetentionResult, run_retention


def summary(figures: Figures, verb: str) -> str:
    objects = ", ".join(f"{n} {fmt}" for fmt, n in figures.export_objects.items())
    return (
        f"{verb}: {figures.database_rows:,} rows of {figures.database_days} day(s) from the database "
        f"(kept {figures.database_rows_kept:,} rows of {figures.database_days_kept} day(s) past the policy); "
        f"export objects: {objects}; daily summaries: {figures.summaries}; Elasticsearch: {figures.indices} index(es), {figures.index_documents:,} documents"
    )


def _echo_plan(plan: RetentionPlan) -> None:
    cutoffs = plan.cutoffs
    if plan.database:
        click.echo(f"database rows (policy {plan.policy.database}, days before {cutoffs['database']}):")
        for entry in plan.database:
            click.echo(f"  {entry.day}  {entry.action.upper():<6} {entry.rows:>10,} rows  {entry.reason}")
    if plan.objects or plan.objects_kept:
        click.echo("export objects (past their format's policy):")
        for obj in plan.objects:
            click.echo(f"  {obj.day}  DELETE {obj.key}")
        for day, reason in sorted(plan.objects_kept.items()):
            click.echo(f"  {day}  KEEP   {reason}")
    if plan.summaries:
        click.echo("daily summaries (their day's exports are all gone):")
        for key in plan.summaries:
            click.echo(f"  DELETE {key}")
    if plan.indices or plan.indices_kept:
        click.echo(f"Elasticsearch indices (policy {plan.policy.elasticsearch}, days before {cutoffs['elasticsearch']}):")
        for index in plan.indices:
            click.echo(f"  {index.day}  DELETE {index.name} ({index.docs:,} documents)")
        for index, reason in plan.indices_kept.values():
            click.echo(f"  {index.day}  KEEP   {index.name} ({index.docs:,} documents): {reason}")
    held = plan.held
    if held:
        click.echo(
            "held because they fail verification (nothing of these days is deleted until `audit-pipeline verify` passes for them; "
            "if the change was intended: audit-pipeline rechain --from DAY --reason ...):"
        )
        for held_day in held:
            kept_index = f", index {held_day.index}" if held_day.index else ""
            click.echo(f"  {held_day.day}  HELD   {held_day.rows:,} rows, {held_day.objects} export object(s){kept_index}: {held_day.reason}")


@main.command("retention")
@click.option("--dry-run", is_flag=True, help="List exactly what would be deleted (days, rows, objects, indices) and change nothing.")
@click.option(
    "--today",
    default=None,
    metavar="DAY",
    help="Compute ages from this earlier UTC day (YYYY-MM-DD) instead of the database's date; a later day is refused (exit 2).",
)
@click.pass_context
@friendly_errors
def retention_command(ctx: click.Context, dry_run: bool, today: str | None) -> None:
    """Delete database rows, exports and Elasticsearch indices older than the retention policy.

    Rows are deleted only for days whose exports exist, are complete and verify (their
    neighbours' links included), and whose events every enabled sink holds, counted; other
    days are kept and listed with the reason.  A day that fails verification keeps its rows,
    export objects and index until `verify` passes for it.  Ages count from the database's date.
    """
    as_of = parse_optional_day(today, "--today")  # the arguments first: a mistyped --today is reported whatever the file holds
    settings = load_settings(config_path(ctx))

    def warn(message: str) -> None:
        click.echo(f"WARNING: {message}", err=True)

    result: RetentionResult = run_retention(settings, today=as_of, dry_run=dry_run, log=lambda message: click.echo(message, err=True), warn=warn)
    if result.legal_hold:
        click.echo("legal hold: nothing deleted")
        return
    if result.plan is None:
        return  # the run already said so ("every policy is unlimited; nothing to do"), once
    _echo_plan(result.plan)
    click.echo(summary(result.figures(), "would delete" if dry_run else "deleted"))
