"""``audit-pipeline forward NAME`` and ``audit-pipeline deadletters ...``: the forwarding engine without a daemon.

Exit codes: 0 everything up to the horizon was delivered; 1 a pass stopped early (the sink kept
failing, refused our credentials, or another forwarder holds the sink), the position stays
before the undelivered events; 2 a configuration error; 3 the pass finished but some events
were rejected by the sink and written to the dead-letter store (replay them once fixed).
"""

from __future__ import annotations

import signal
import sys
import threading

import click

from audit_pipeline.cli.app import config_path, friendly_errors, main
from audit_pipeline.forwarding.results import PassResult
from audit_pipeline.settings import load_settings

EXIT_STOPPED = 1
EXIT_DEAD_LETTERS = 3


def _progress(message: str) -> None:
    click.echo(message, err=True)


@main.command()
@click.argument("sink")
@click.option("--once", is_flag=True, help="Forward everything older than the settle lag at start, then exit.")
@click.option("--max-rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Events per second at most (overrides the configuration).")
@click.option(
    "--wait-for-lease", type=click.FloatRange(min=0), default=None, help="Seconds to wait while another forwarder holds the sink (default: one lease period)."
)
@click.option(
    "--liveness-file",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Following: touch this file after every pass and probe; it goes stale when the follower stops making progress.",
)
@click.pass_context
@friendly_errors
def forward(ctx: click.Context, sink: str, once: bool, max_rate: float | None, wait_for_lease: float | None, liveness_file: str | None) -> None:
    """Forward audit events to SINK (e.g. elasticsearch), from its durable position on.

    Without --once it follows: events reach the sink about a second after their commit. SIGTERM or
    Ctrl-C finishes the batches in flight, commits their position and exits."""
    from audit_pipeline.cli.memory import streaming_memory

    with streaming_memory():
        _forward(ctx, sink, once, max_rate, wait_for_lease, liveness_file)


def _touch(path: str) -> None:
    """Mark the follower alive: the file's modification time is now (created if missing)."""
    import os

    try:
        with open(path, "a"):
            pass
        os.utime(path)
    except OSError as exc:
        _progress(f"cannot touch the liveness file {path}: {exc.strerror}")


def _forward(ctx: click.Context, sink: str, once: bool, max_rate: float | None, wait_for_lease: float | None, liveness_file: str | None = None) -> None:
    from audit_pipeline.forwarding.build import close_forwarder, open_forwarder

    settings = load_settings(config_path(ctx))
    forwarder = open_forwarder(settings, sink, log=_progress, max_rate=max_rate)
    if liveness_file:
        forwarder.alive = lambda: _touch(liveness_file)
    stop = threading.Event()
    dead_lettered = 0
    last = None
    try:
        forwarder.acquire(wait_for_lease)
        if once:
            last = forwarder.run_pass()
            click.echo(last.summary())
            dead_lettered = last.dead_lettered
        else:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            report = _FollowReport()
            for result in forwarder.follow(stop):
                last = result
                dead_lettered += result.dead_lettered
                for line in report.add(result):
                    click.echo(line)
            for line in report.flush():
                click.echo(line)
    finally:
        close_forwarder(forwarder)
    if last is not None and last.stopped:
        sys.exit(EXIT_STOPPED)
    if dead_lettered:
        click.echo(
            f"{dead_lettered:,} event(s) were rejected by {sink} and kept in the dead-letter store; fix the cause, then run: audit-pipeline deadletters replay {sink}",
            err=True,
        )
        sys.exit(EXIT_DEAD_LETTERS)


class _FollowReport:
    """A follower runs several small passes a second: plain deliveries are summed into one line every
    ``every`` seconds; a pass that stopped, dead-lettered, found late events or cut events is shown at once."""

    def __init__(self, every: float = 10.0) -> None:
        import time

        self._clock = time.monotonic
        self.every = every
        self._since = self._clock()
        self._delivered = self._passes = 0
        self._last: object = None

    def add(self, result: PassResult) -> list[str]:
        if result.stopped or result.dead_lettered or result.late_events or result.truncated:
            return [*self.flush(), result.summary()]
        self._delivered += result.delivered + result.skipped
        self._passes += 1
        self._last = result
        return self.flush() if self._clock() - self._since >= self.every else []

    def flush(self) -> list[str]:
        from audit_pipeline.forwarding.results import show_position

        lines = []
        last = self._last
        if self._delivered and isinstance(last, PassResult):
            seconds = self._clock() - self._since
            lines.append(f"{last.sink}: {self._delivered:,} delivered in {seconds:.1f}s ({self._passes:,} passes); position {show_position(last.position)}")
        self._since = self._clock()
        self._delivered = self._passes = 0
        return lines


@main.group()
def deadletters() -> None:
    """Events a sink rejected for good, kept under deadletters/ in the export store."""


@deadletters.command("list")
@click.argument("sink")
@click.pass_context
@friendly_errors
def list_dead_letters(ctx: click.Context, sink: str) -> None:
    """List SINK's dead-letter objects as a table: key (under the export root), event count, first reason."""
    from audit_pipeline.cli.table import render
    from audit_pipeline.errors import ConfigError
    from audit_pipeline.forwarding.configured import configured_sinks
    from audit_pipeline.forwarding.deadletters import DeadLetterStore
    from audit_pipeline.redaction import excerpt
    from audit_pipeline.storage import ObjectStore

    settings = load_settings(config_path(ctx))
    store = DeadLetterStore(ObjectStore.from_settings(settings.export))
    total = 0
    rows: list[list[str]] = []
    for obj in store.iter_objects(sink):
        total += len(obj.events)
        rows.append([obj.key, f"{len(obj.events):,}", excerpt(obj.reasons[0], 100) if obj.reasons else ""])
    if rows:
        click.echo(render(["KEY", "EVENTS", "FIRST REASON"], rows, right=[1]))
    if not total:
        configured = configured_sinks(settings, include_disabled=True)
        for other in configured:
            other.sink.close()
        if sink not in {c.name for c in configured}:
            known = ", ".join(c.name for c in configured) or "none"
            raise ConfigError(f"no sink named {sink!r} in the configuration's sinks: section (configured: {known}), and no dead letters kept for it")
    click.echo(f"{total:,} dead-lettered event(s) for {sink}" + (f"; keys are under {store.store.uri('')}" if rows else ""), err=True)


@deadletters.command("replay")
@click.argument("sink")
@click.option("--wait-for-lease", type=click.FloatRange(min=0), default=None, help="Seconds to wait while a forwarder holds the sink.")
@click.pass_context
@friendly_errors
def replay(ctx: click.Context, sink: str, wait_for_lease: float | None) -> None:
    """Send SINK's dead letters again; delivered ones are removed, the rest keep their new reason."""
    from audit_pipeline.forwarding.build import close_forwarder, open_forwarder

    settings = load_settings(config_path(ctx))
    forwarder = open_forwarder(settings, sink, log=_progress)
    try:
        with forwarder.leased(wait_for_lease):
            result = forwarder.replay_dead_letters()
    finally:
        close_forwarder(forwarder)
    click.echo(result.summary())
    if result.stopped:
        sys.exit(EXIT_STOPPED)
    if result.still_rejected:
        sys.exit(EXIT_DEAD_LETTERS)
