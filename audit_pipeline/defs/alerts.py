"""The ``audit_alerts`` sensor: every minute, the conditions an operator must hear about, sent through ``alerts:``.

Watched: the latest run of each job in ``alerts.jobs`` per partition (a failure alerts, the next success of the same
job and partition resolves it); the latest evaluation of every asset check per partition in recent runs (the export
checks, ``no_spike``'s spike warning); each enabled sink's lag and dead letters (:mod:`audit_pipeline.alerts.sinks`).
What was already said is remembered per channel in the state database (:mod:`audit_pipeline.alerts.book`), so each
failure is one alert and one "resolved". With no channel configured the sensor skips and says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dagster as dg

from audit_pipeline.alerts.book import AlertBook
from audit_pipeline.alerts.channels import senders
from audit_pipeline.alerts.condition import Condition
from audit_pipeline.alerts.sinks import sink_conditions
from audit_pipeline.config.sections.alerts import AlertSettings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.defs.forwarding import lag_asset_key
from audit_pipeline.defs.naming import UNPREFIXED, Naming
from audit_pipeline.defs.resources import AuditPipelineResource

PARTITION_TAG = "dagster/partition"
#: How many recent finished runs each evaluation reads (runs and their check evaluations).
RECENT_RUNS = 50


def _ui(settings: AlertSettings, path: str) -> str:
    return f"{settings.ui_url.rstrip('/')}/{path.lstrip('/')}"


def run_conditions(instance: dg.DagsterInstance, settings: AlertSettings, naming: Naming = UNPREFIXED) -> list[Condition]:
    """The latest finished run of each watched job (``alerts.jobs``, this deployment's) and partition: failing, or fine."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=None, statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]), limit=RECENT_RUNS)
    watched = {naming.name(job) for job in settings.jobs}
    latest: dict[tuple[str, str], dg.DagsterRun] = {}
    for run in runs:  # newest first
        if run.job_name in watched:
            latest.setdefault((run.job_name, run.tags.get(PARTITION_TAG, "")), run)
    conditions = []
    for (job, partition), run in latest.items():
        where = f" for {partition}" if partition else ""
        conditions.append(
            Condition(
                key=f"run:{job}:{partition}",
                firing=run.status == dg.DagsterRunStatus.FAILURE,
                title=f"{job} failed{where}" if run.status == dg.DagsterRunStatus.FAILURE else f"{job} succeeded{where}",
                detail=f"run {run.run_id}",
                link=_ui(settings, f"runs/{run.run_id}"),
            )
        )
    return conditions


def check_conditions(instance: dg.DagsterInstance, settings: AlertSettings, naming: Naming = UNPREFIXED) -> list[Condition]:
    """The latest evaluation of each of this deployment's asset checks and partition in recent runs: failed (error or warning), or passed.

    Only this deployment's assets: another deployment, or another team's assets in the same code location, alert
    through their own channels."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]), limit=RECENT_RUNS)
    latest: dict[tuple[str, str, str], Condition] = {}
    for run in runs:  # newest first: the first evaluation met for a key is its latest
        records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, ascending=False).records
        for record in records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            evaluation = event.event_specific_data
            if not naming.owns(evaluation.asset_key):  # type: ignore[union-attr]
                continue
            asset = evaluation.asset_key.to_user_string()  # type: ignore[union-attr]
            check = evaluation.check_name  # type: ignore[union-attr]
            partition = evaluation.partition or ""  # type: ignore[union-attr]
            key = (asset, check, partition)
            if key in latest:
                continue
            failed = not evaluation.passed  # type: ignore[union-attr]
            severity = evaluation.severity.value  # type: ignore[union-attr]
            where = f" for {partition}" if partition else ""
            latest[key] = Condition(
                key=f"check:{asset}:{check}:{partition}",
                firing=failed,
                title=f"check {check} on {asset} {'failed' if failed else 'passed'}{where} ({severity})",
                detail=(evaluation.description or "")[:500],  # type: ignore[union-attr]
                link=_ui(settings, f"assets/{'/'.join(evaluation.asset_key.path)}?view=checks"),  # type: ignore[union-attr]
            )
    return list(latest.values())


def evaluate_alerts(instance: dg.DagsterInstance, audit: AuditPipelineResource, naming: Naming = UNPREFIXED) -> tuple[list[str], list[str]]:
    """Send what changed; the lines sent and the channels' failures (the sensor's log)."""
    settings = audit.settings()
    alerts = settings.alerts
    conditions: list[Condition] = [*run_conditions(instance, alerts, naming), *check_conditions(instance, alerts, naming)]
    conditions += sink_conditions(settings, link=lambda sink: _ui(alerts, f"assets/{naming.key(lag_asset_key(sink)).to_user_string()}"))
    book = AlertBook(settings.resolved_state_url())
    try:
        outcome = book.evaluate(conditions, senders(alerts))
    finally:
        book.close()
    return [f"{channel}: {message.subject}" for channel, message in outcome.sent], outcome.failures


def _lines(items: Iterable[str]) -> str:
    return "; ".join(items)


def build_alerts_sensor(naming: Naming = UNPREFIXED) -> dg.SensorDefinition:
    """The ``audit_alerts`` sensor, named for one deployment."""

    @dg.sensor(
        name=naming.name("audit_alerts"),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends alerts: (Slack, webhook, e-mail) for failed runs and checks, lagging or stopped sinks, dead letters and spikes; "
        "one per failure, one when it clears.",
        required_resource_keys={naming.resource_key},
    )
    def audit_alerts(context: dg.SensorEvaluationContext, **_resources: Any) -> dg.SkipReason:  # a direct call passes the resource too
        audit = naming.resource(context)
        try:
            if not audit.settings().alerts.enabled:
                return dg.SkipReason("no alert channel configured (alerts.slack, alerts.webhook or alerts.email)")
            sent, failures = evaluate_alerts(context.instance, audit, naming)
        except ConfigError as exc:
            return dg.SkipReason(f"alerts not evaluated: {exc}")
        for failure in failures:
            context.log.warning(failure)
        return dg.SkipReason(f"sent {len(sent)}: {_lines(sent)}" if sent else "nothing changed")

    return audit_alerts


#: This repository's own names (tests evaluate it directly).
audit_alerts = build_alerts_sensor()
