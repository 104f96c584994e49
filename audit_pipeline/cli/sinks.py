"""``audit-pipeline sinks list|seek|moves``: each sink's position, lag, dead letters and lease, and moving a position.

``seek`` is how a sink re-sends a range or skips one once it has a position (``start`` only applies
before that). It refuses while a forwarder holds the sink's lease, asks for confirmation (``--yes``
skips it; without a terminal it is required), and records who moved the position and why in the
state database (``sinks moves`` lists them).

Exit codes: 0 done; 1 a forwarder holds the sink (nothing moved); 2 a wrong argument or setting.
"""

from __future__ import annotations

import sys

import click

from audit_pipeline.cli.app import config_path, friendly_errors, main
from audit_pipeline.cli.table import duration, render
from audit_pipeline.config.settings import load_settings


def _show(position: object) -> str:
    from audit_pipeline.core.isotime import format_instant
    from audit_pipeline.sources.base import Position

    if position is None:
        return "before the first event"
    assert isinstance(position, Position)
    return f"{format_instant(position.created_at)} {position.id}".rstrip()


@main.group("sinks")
def sinks_group() -> None:
    """Each sink's position, lag, dead letters and lease; move a position with a recorded reason."""


@sinks_group.command("list")
@click.option("--no-lag", is_flag=True, help="Do not ask the source how many events each sink is behind (no source connection).")
@click.pass_context
@friendly_errors
def list_command(ctx: click.Context, no_lag: bool) -> None:
    """One line per sink: position, lag (events after it and the oldest one's age), dead letters pending, lease."""
    from audit_pipeline.forwarding.configured import configured_sinks
    from audit_pipeline.forwarding.horizon import measure_lag
    from audit_pipeline.forwarding.positions import PositionStore
    from audit_pipeline.sources.registry import open_source

    settings = load_settings(config_path(ctx))
    configured = configured_sinks(settings, include_disabled=True)
    for sink in configured:
        sink.sink.close()
    store = PositionStore.from_settings(settings)
    source = None if no_lag else open_source(settings)
    rows: list[list[str]] = []
    try:
        states = {state.sink: state for state in store.all()}
        names: list[tuple[str, object, bool | None]] = [(c.name, c.options.start, c.options.enabled) for c in configured]
        names += [(name, None, None) for name in sorted(states) if name not in {c.name for c in configured}]
        for name, start, enabled in names:
            state = states.get(name)
            position = f"not started (start: {start})" if state is None else _show(state.position)
            if enabled is None:
                position += " (not configured)"
            elif not enabled:
                position += " (disabled)"
            lag = "-"
            if source is not None and (state is not None or start is not None):
                measured = measure_lag(source, state, start if start is not None else "now")
                lag = "up to date" if not measured.events else f"{measured.events:,} ({duration(measured.seconds)})"
            dead = f"{state.dead_letters_pending:,}" if state else "0"
            lease = store.lease(name)
            held = f"{lease.holder} ({lease.expires_in:.0f}s)" if lease else "free"
            rows.append([name, position, lag, dead, held])
    finally:
        if source is not None:
            source.close()
        store.close()
    if not rows:
        click.echo("no sinks: add one under sinks: in the configuration (docs/forwarding.md)", err=True)
        return
    click.echo(render(["SINK", "POSITION", "LAG (OLDEST)", "DEAD LETTERS", "LEASE"], rows, right=[3]))


@sinks_group.command("seek")
@click.argument("sink")
@click.option("--to", "target", required=True, help="earliest, now, a UTC day (YYYY-MM-DD: from its midnight), or an event id (continue after it).")
@click.option("--reason", required=True, help="Why the position moves; recorded with who moved it.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@friendly_errors
def seek_command(ctx: click.Context, sink: str, target: str, reason: str, yes: bool) -> None:
    """Move SINK's position to --to, recording who moved it and --reason; refused while a forwarder holds the sink."""
    from audit_pipeline.core.errors import ConfigError
    from audit_pipeline.forwarding.configured import check_sink_name
    from audit_pipeline.forwarding.positions import PositionStore
    from audit_pipeline.forwarding.seek import move_position, operator, resolve_target
    from audit_pipeline.sources.registry import open_source

    settings = load_settings(config_path(ctx))
    if not reason.strip():
        raise ConfigError("--reason must say why the position moves (it is recorded with the move)")
    check_sink_name(settings, sink)
    source = open_source(settings)
    store = PositionStore.from_settings(settings)
    try:
        to = resolve_target(target, source)
        state = store.get(sink)
        before = _show(state.position) if state else "no position yet"
        if not yes:
            if not sys.stdin.isatty():
                raise ConfigError("sinks seek asks for confirmation; add --yes to move the position without a terminal")
            click.confirm(f"move {sink} from {before} to {_show(to)}?", abort=True, err=True)
        move = move_position(store, sink, to, target=target, reason=reason, moved_by=operator(), lease_seconds=settings.forwarding.lease_seconds)
    finally:
        source.close()
        store.close()
    click.echo(f"{sink}: moved from {before} to {_show(move.after)} by {move.moved_by}: {move.reason}")
    click.echo(
        f"the next forward of {sink} sends the events after {_show(move.after)}; events before it are no longer owed to {sink} (retention does not wait for them)",
        err=True,
    )


@sinks_group.command("moves")
@click.argument("sink", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many of the latest moves.")
@click.pass_context
@friendly_errors
def moves_command(ctx: click.Context, sink: str | None, limit: int) -> None:
    """The recorded position moves, newest first: when, who, from, to, why."""
    from audit_pipeline.core.isotime import format_instant
    from audit_pipeline.forwarding.positions import PositionStore
    from audit_pipeline.forwarding.seek import moves

    settings = load_settings(config_path(ctx))
    store = PositionStore.from_settings(settings)
    try:
        found = moves(store, sink, limit)
    finally:
        store.close()
    if not found:
        click.echo(f"no position moves recorded{f' for {sink}' if sink else ''}", err=True)
        return
    rows = [[format_instant(m.moved_at.replace(microsecond=0)), m.sink, m.moved_by, _show(m.before), _show(m.after), m.reason] for m in found]
    click.echo(render(["WHEN", "SINK", "BY", "FROM", "TO", "REASON"], rows))
