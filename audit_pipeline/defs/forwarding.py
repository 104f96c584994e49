"""Forwarding in Dagster: per configured sink, a sensor (``<sink>_forwarder``), a job and a lag asset.

The sensor only decides: it reads the sink's durable position (state database), computes the
horizon, and when events are pending requests one run for that range (``run_key`` =
sink, position, horizon), so a range is never launched twice.  It launches nothing while a
forwarding run for the sink is queued or running, or while another forwarder (the
``forward`` command) holds the sink's lease.  The run does the work with the same engine as
``audit-pipeline forward``; a failed run leaves the position, so the next tick asks again.

Each tick records an observation on ``audit_logs_in_<sink>`` with how far the sink is behind
(events and seconds) and how many dead letters wait for a replay, and evaluates the asset's
``lag_within_max`` check (failing past ``forwarding.max_lag_seconds``), so an alert on a failed
check covers the real-time follower as well as the sensor's runs.
"""

import datetime as dt
import json
import re
from typing import Any

import dagster as dg

from audit_pipeline.config.settings import Settings
from audit_pipeline.defs.exports import SOURCE_TABLE
from audit_pipeline.defs.naming import UNPREFIXED, Naming
from audit_pipeline.forwarding.configured import configured_sinks, find_sink
from audit_pipeline.forwarding.horizon import Lag, compute_horizon, initial_position, measure_lag
from audit_pipeline.forwarding.ledger import late_total
from audit_pipeline.forwarding.positions import PositionStore, SinkState
from audit_pipeline.forwarding.sweep import check
from audit_pipeline.sources.base import Position
from audit_pipeline.sources.registry import open_source

ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
SINK_TAG = "audit_pipeline/sink"


def slug(sink_name: str) -> str:
    """A sink name as a Dagster name (``webhook:SIEM`` → ``webhook_SIEM``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", sink_name)


def lag_asset_key(sink_name: str) -> dg.AssetKey:
    return dg.AssetKey(f"audit_logs_in_{slug(sink_name)}")


class ForwardRange(dg.Config):
    """The range a run forwards: from the sink's position (whatever it is when the run starts) to ``horizon``."""

    horizon: str
    requested_from: str = ""


def _position_text(position: Position | None) -> str:
    return "(start)" if position is None else f"{position.created_at.isoformat()} {position.id}"


def _lag_metadata(lag: Lag, state: SinkState | None, horizon: dt.datetime | None, late_events: int = 0) -> dict[str, Any]:
    return {
        "late_events_total": dg.MetadataValue.int(late_events),
        "events_behind": dg.MetadataValue.int(lag.events),
        "seconds_behind": dg.MetadataValue.float(round(lag.seconds, 3)),
        "dead_letters": dg.MetadataValue.int(state.dead_letters_pending if state else 0),
        "delivered_total": dg.MetadataValue.int(state.delivered if state else 0),
        "position": _position_text(state.position if state else None),
        "horizon": horizon.isoformat() if horizon else "",
    }


LAG_CHECK = "lag_within_max"


def lag_check_evaluation(sink_name: str, lag: Lag, max_lag_seconds: float, naming: Naming = UNPREFIXED) -> dg.AssetCheckEvaluation:
    """The lag check's verdict: fails when the oldest event the sink has not received is older than
    ``forwarding.max_lag_seconds`` (whoever forwards: the sensor's runs or ``audit-pipeline forward``)."""
    passed = lag.seconds <= max_lag_seconds
    oldest = lag.oldest_pending.isoformat() if lag.oldest_pending else "none"
    description = (
        f"{sink_name} is {lag.seconds:,.0f}s behind ({lag.events:,} events; oldest undelivered {oldest}), "
        f"{'within' if passed else 'over'} forwarding.max_lag_seconds={max_lag_seconds:g}"
    )
    return dg.AssetCheckEvaluation(
        asset_key=naming.key(lag_asset_key(sink_name)),
        check_name=LAG_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "seconds_behind": dg.MetadataValue.float(round(lag.seconds, 3)),
            "events_behind": dg.MetadataValue.int(lag.events),
            "max_lag_seconds": dg.MetadataValue.float(max_lag_seconds),
        },
    )


def late_behind(source: Any, positions: PositionStore, sink_name: str, state: SinkState | None, late_window: float) -> bool:
    """Whether the sweep would find events committed behind the sink's position (a run delivers them)."""
    if not late_window or state is None or state.position is None:
        return False
    return check(source, positions.engine, sink_name, state.position, dt.timedelta(seconds=late_window)) is not None


def build_sink_definitions(sink_name: str, kind: str, sensor_interval: int, naming: Naming = UNPREFIXED) -> dg.Definitions:
    """The asset, job and sensor of one sink."""
    name = slug(sink_name)
    op_name = naming.name(f"forward_{name}")
    asset_key = naming.key(lag_asset_key(sink_name))
    asset = dg.AssetSpec(
        asset_key,
        deps=[naming.key(SOURCE_TABLE)],
        description=f"Audit events as forwarded to the {sink_name} sink; observations carry its lag and dead-letter count.",
        group_name="forwarding",
        kinds={kind},
        owners=["team:security-engineering"],
    )

    @dg.asset_check(
        asset=asset_key,
        name=LAG_CHECK,
        description=f"Fails when the oldest audit event not yet delivered to {sink_name} is older than forwarding.max_lag_seconds; "
        "the sensor evaluates it every tick.",
        required_resource_keys={naming.resource_key},
    )
    def lag_check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        settings = naming.resource(context).settings()
        configured = find_sink(settings, sink_name)
        configured.sink.close()
        positions = PositionStore.from_settings(settings)
        source = open_source(settings)
        try:
            lag = measure_lag(source, positions.get(sink_name), configured.options.start)
        finally:
            source.close()
            positions.close()
        verdict = lag_check_evaluation(sink_name, lag, settings.forwarding.max_lag_seconds, naming)
        return dg.AssetCheckResult(passed=verdict.passed, severity=verdict.severity, description=verdict.description, metadata=verdict.metadata)

    @dg.op(name=op_name, pool=naming.name(f"sink_{name}"), tags={SINK_TAG: sink_name}, required_resource_keys={naming.resource_key})
    def forward_op(context: dg.OpExecutionContext, config: ForwardRange) -> None:
        from audit_pipeline.forwarding.build import close_forwarder, open_forwarder

        settings = naming.resource(context).settings()
        forwarder = open_forwarder(settings, sink_name, log=context.log.info)
        try:
            forwarder.acquire()
            result = forwarder.run_pass(horizon=dt.datetime.fromisoformat(config.horizon))
            state = forwarder.positions.get(sink_name)
            lag = measure_lag(forwarder.source, state, forwarder.options.start)
            late = late_total(forwarder.positions.engine, sink_name)
        finally:
            close_forwarder(forwarder)
        metadata = {
            **_lag_metadata(lag, state, result.horizon, late),
            "late_events": dg.MetadataValue.int(result.late_events),
            "truncated": dg.MetadataValue.int(result.truncated),
            "delivered": dg.MetadataValue.int(result.delivered),
            "dead_lettered": dg.MetadataValue.int(result.dead_lettered),
            "dead_letter_objects": dg.MetadataValue.json(result.dead_letter_keys),
            "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        }
        context.log_event(dg.AssetObservation(asset_key=asset_key, metadata=metadata))
        if result.stopped:
            raise dg.Failure(description=result.summary(), metadata={"delivered": result.delivered, "dead_lettered": result.dead_lettered})
        context.log.info(result.summary())

    @dg.job(
        name=naming.name(f"forward_{name}_job"),
        tags={SINK_TAG: sink_name},
        description=f"Forward pending audit events to {sink_name} up to the requested horizon.",
    )
    def forward_job() -> None:
        forward_op()

    @dg.sensor(
        name=naming.name(f"{name}_forwarder"),
        job=forward_job,
        minimum_interval_seconds=sensor_interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests a {forward_job.name} run when events older than the horizon wait for {sink_name}.",
        required_resource_keys={naming.resource_key},
    )
    def forwarder_sensor(context: dg.SensorEvaluationContext, **_resources: Any) -> dg.SensorResult:  # a direct call passes the resource too
        settings = naming.resource(context).settings()
        fwd = settings.forwarding
        configured = find_sink(settings, sink_name)
        configured.sink.close()
        positions = PositionStore.from_settings(settings)
        source = open_source(settings)
        try:
            state = positions.get(sink_name) or positions.initialise(sink_name, initial_position(configured.options.start, source))
            horizon = compute_horizon(source, fwd).value
            lag = measure_lag(source, state, configured.options.start)
            observation = dg.AssetObservation(asset_key=asset_key, metadata=_lag_metadata(lag, state, horizon, late_total(positions.engine, sink_name)))
            verdict = lag_check_evaluation(sink_name, lag, fwd.max_lag_seconds, naming)
            active = context.instance.get_runs(filters=dg.RunsFilter(job_name=forward_job.name, statuses=ACTIVE_STATUSES), limit=1)
            if active:
                return dg.SensorResult(
                    skip_reason=f"run {active[0].run_id} is forwarding to {sink_name}", asset_events=[observation, verdict], cursor=context.cursor
                )
            lease = positions.lease(sink_name)
            if lease is not None:
                return dg.SensorResult(
                    skip_reason=f"{lease.holder} holds {sink_name}'s lease (e.g. audit-pipeline forward)",
                    asset_events=[observation, verdict],
                    cursor=context.cursor,
                )
            late = late_behind(source, positions, sink_name, state, fwd.late_window)
            if not late and (lag.oldest_pending is None or lag.oldest_pending >= horizon):
                return dg.SensorResult(
                    skip_reason=f"nothing older than the horizon {horizon.isoformat()} waits for {sink_name}",
                    asset_events=[observation, verdict],
                    cursor=context.cursor,
                )
            start = _position_text(state.position)
            run_key = f"{sink_name}|{start}|{horizon.isoformat()}"
            request = dg.RunRequest(
                run_key=run_key,
                run_config=dg.RunConfig(ops={op_name: ForwardRange(horizon=horizon.isoformat(), requested_from=start)}),
                tags={SINK_TAG: sink_name},
            )
            cursor = json.dumps({"run_key": run_key, "events_behind": lag.events, "late_behind_position": late})
            return dg.SensorResult(run_requests=[request], asset_events=[observation, verdict], cursor=cursor)
        finally:
            source.close()
            positions.close()

    return dg.Definitions(assets=[asset], asset_checks=[lag_check], jobs=[forward_job], sensors=[forwarder_sensor])


def build_forwarding_definitions(settings: Settings, naming: Naming = UNPREFIXED) -> dg.Definitions:
    """One set of definitions per enabled sink in the settings."""
    fwd = settings.forwarding
    parts = []
    for configured in configured_sinks(settings):
        configured.sink.close()
        parts.append(build_sink_definitions(configured.name, configured.kind, fwd.sensor_interval_seconds, naming))
    return dg.Definitions.merge(*parts) if parts else dg.Definitions()
