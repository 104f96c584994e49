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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from audit_pipeline.cli.app import config_path, friendly_errors, main
from audit_pipeline.config.settings import Settings, load_settings
from audit_pipeline.forwarding.results import PassResult

if TYPE_CHECKING:
    from audit_pipeline.forwarding.engine import Forwarder
    from audit_pipeline.forwarding.metrics import FollowerMetrics

EXIT_STOPPED = 1
EXIT_DEAD_LETTERS = 3
#: Where --metrics-port listens by default: Prometheus scrapes from outside the host or pod.
ANY_ADDRESS = "0.0.0.0"  # noqa: S104


def _progress(message: str) -> None:
    click.echo(message, err=True)


@main.command()
@click.argument("sink", required=False)
@click.option("--all", "all_sinks", is_flag=True, help="Every enabled sink, in one process: each at its own position, on its own thread.")
@click.option("--once", is_flag=True, help="Forward everything older than the settle lag at start, then exit.")
@click.option("--max-rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Events per second at most (overrides the configuration).")
@click.option(
    "--wait-for-lease", type=click.FloatRange(min=0), default=None, help="Seconds to wait while another forwarder holds the sink (default: one lease period)."
)
@click.option(
    "--liveness-file",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Following: touch this file after every pass, probe and retry (of every sink with --all); it goes stale when the follower stops making progress.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="Following: serve Prometheus metrics (delivered, dead-lettered, retries, lag seconds per sink) on this port at /metrics.",
)
@click.option("--metrics-address", default=ANY_ADDRESS, show_default=True, help="The address --metrics-port listens on.")
@click.pass_context
@friendly_errors
def forward(
    ctx: click.Context,
    sink: str | None,
    all_sinks: bool,
    once: bool,
    max_rate: float | None,
    wait_for_lease: float | None,
    liveness_file: str | None,
    metrics_port: int | None,
    metrics_address: str,
) -> None:
    """Forward audit events to SINK (e.g. elasticsearch), or to every enabled sink with --all, from each sink's durable position on.

    Without --once it follows: events reach the sink about a second after their commit. SIGTERM or
    Ctrl-C finishes the batches in flight, commits their position and exits."""
    from audit_pipeline.cli.memory import streaming_memory
    from audit_pipeline.core.errors import ConfigError

    if all_sinks == (sink is not None):
        raise ConfigError("forward takes a SINK name or --all (every enabled sink), not both and not neither; audit-pipeline sinks list shows the names")
    if once and metrics_port is not None:
        raise ConfigError("--metrics-port is for following (forward without --once): a --once run ends before a scrape")
    options = _Options(once, max_rate, wait_for_lease, liveness_file, metrics_port, metrics_address)
    with streaming_memory():
        if all_sinks:
            _forward_all(ctx, options)
        else:
            assert sink is not None
            _forward(ctx, sink, options)


@dataclass(frozen=True)
class _Options:
    """The command's options, as every way of running it (one sink, --all, --once or following) reads them."""

    once: bool
    max_rate: float | None
    wait_for_lease: float | None
    liveness_file: str | None
    metrics_port: int | None
    metrics_address: str


def _touch(path: str) -> None:
    """Mark the follower alive: the file's modification time is now (created if missing)."""
    import os

    try:
        with open(path, "a"):
            pass
        os.utime(path)
    except OSError as exc:
        _progress(f"cannot touch the liveness file {path}: {exc.strerror}")


def _on_stop_signals(stop: threading.Event) -> None:
    """SIGTERM and Ctrl-C set ``stop`` from another thread.

    A handler runs in the main thread between two bytecodes, possibly while that thread holds the event's
    internal lock inside ``stop.wait()``; ``stop.set()`` there would wait for that lock forever and the
    follower would never stop.  A short-lived thread takes the lock once the main thread lets it go."""

    def request_stop(*_: object) -> None:
        threading.Thread(target=stop.set, name="stop-signal", daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)


def _forward(ctx: click.Context, sink: str, options: _Options) -> None:
    from audit_pipeline.forwarding.build import close_forwarder, open_forwarder

    settings = load_settings(config_path(ctx))
    forwarder = open_forwarder(settings, sink, log=_progress, max_rate=options.max_rate)
    liveness_file = options.liveness_file
    if liveness_file:
        forwarder.alive = lambda: _touch(liveness_file)
    stop = threading.Event()
    dead_lettered = 0
    last = None
    metrics = None
    try:
        forwarder.acquire(options.wait_for_lease)
        if options.once:
            last = forwarder.run_pass()
            click.echo(last.summary())
            dead_lettered = last.dead_lettered
        else:
            _on_stop_signals(stop)
            if options.metrics_port is not None:
                metrics = _serve_metrics(options.metrics_port, options.metrics_address, [forwarder])
            report = _FollowReport()
            for result in forwarder.follow(stop):
                last = result
                dead_lettered += result.dead_lettered
                if metrics is not None:
                    metrics.record(result)
                for line in report.add(result):
                    click.echo(line)
            for line in report.flush():
                click.echo(line)
    finally:
        if metrics is not None:
            metrics.close()
        close_forwarder(forwarder)
    _exit(last is not None and last.stopped is not None, {sink: dead_lettered})


def _serve_metrics(port: int, address: str, forwarders: list[Forwarder]) -> FollowerMetrics:
    from audit_pipeline.forwarding.metrics import FollowerMetrics

    metrics = FollowerMetrics()
    for forwarder in forwarders:
        metrics.watch(forwarder)
    bound = metrics.serve(port, address)
    _progress(f"Prometheus metrics on http://{address}:{bound}/metrics")
    return metrics


def _exit(stopped: bool, dead_lettered: dict[str, int]) -> None:
    if stopped:
        sys.exit(EXIT_STOPPED)
    for name, count in dead_lettered.items():
        if count:
            click.echo(
                f"{count:,} event(s) were rejected by {name} and kept in the dead-letter store; fix the cause, then run: audit-pipeline deadletters replay {name}",
                err=True,
            )
    if any(dead_lettered.values()):
        sys.exit(EXIT_DEAD_LETTERS)


def _forward_all(ctx: click.Context, options: _Options) -> None:
    """Every enabled sink: one pass each in turn (--once), or one follower thread each sharing the probe."""
    from audit_pipeline.core.errors import ConfigError
    from audit_pipeline.forwarding.build import close_forwarder, open_forwarder
    from audit_pipeline.forwarding.configured import configured_sinks

    settings = load_settings(config_path(ctx))
    configured = configured_sinks(settings)
    names = [c.name for c in configured]
    for c in configured:
        c.sink.close()
    if not names:
        raise ConfigError("forward --all: no enabled sink in the configuration's sinks: section; add one (see docs/forwarding.md)")
    forwarders: list[Forwarder] = []
    try:
        for name in names:
            forwarders.append(open_forwarder(settings, name, log=_progress, max_rate=options.max_rate))
        if options.once:
            stopped = False
            dead: dict[str, int] = {}
            for forwarder in forwarders:
                with forwarder.leased(options.wait_for_lease):
                    result = forwarder.run_pass()
                click.echo(result.summary())
                stopped = stopped or result.stopped is not None
                dead[forwarder.sink.name] = result.dead_lettered
            _exit(stopped, dead)
            return
        _follow_all(settings, forwarders, options)
    finally:
        for forwarder in forwarders:
            close_forwarder(forwarder)


def _follow_all(settings: Settings, forwarders: list[Forwarder], options: _Options) -> None:
    import time

    from audit_pipeline.core.redaction import redact
    from audit_pipeline.forwarding.fleet import Fleet, SharedProbe
    from audit_pipeline.sources.registry import open_source

    probe_source = open_source(settings)
    echo_lock = threading.Lock()
    reports = {f.sink.name: _FollowReport() for f in forwarders}
    alive = _AllAlive([f.sink.name for f in forwarders], options.liveness_file)
    for forwarder in forwarders:
        forwarder.alive = alive.marker(forwarder.sink.name)
    metrics = _serve_metrics(options.metrics_port, options.metrics_address, forwarders) if options.metrics_port is not None else None

    def on_result(result: PassResult) -> None:
        if metrics is not None:
            metrics.record(result)
        with echo_lock:
            for line in reports[result.sink].add(result):
                click.echo(line)

    fleet = Fleet(forwarders, SharedProbe(probe_source), on_result=on_result, log=lambda m: _progress(redact(m)), wait_for_lease=options.wait_for_lease)
    _on_stop_signals(fleet.stop)
    _progress(f"following {len(forwarders)} sink(s): {', '.join(f.sink.name for f in forwarders)}")
    try:
        fleet.start()
        while not fleet.stop.wait(0.5):
            # A report line every 10 s per sink, even when its thread is idle.
            with echo_lock:
                for report in reports.values():
                    if time.monotonic() - report.since >= report.every:
                        for line in report.flush():
                            click.echo(line)
    finally:
        fleet.stop.set()
        fleet.join()
        for report in reports.values():
            for line in report.flush():
                click.echo(line)
        if metrics is not None:
            metrics.close()
        probe_source.close()
    _exit(False, {f.name: f.dead_lettered for f in fleet})


class _AllAlive:
    """The liveness file of ``--all``: touched only when every sink's follower has shown progress since
    the last touch, so one hung sink makes it stale even while the others go on."""

    def __init__(self, sinks: list[str], path: str | None) -> None:
        self.path = path
        self._waiting = set(sinks)
        self._sinks = set(sinks)
        self._lock = threading.Lock()

    def marker(self, sink: str) -> Callable[[], None]:
        def alive() -> None:
            if self.path is None:
                return
            with self._lock:
                self._waiting.discard(sink)
                if self._waiting:
                    return
                self._waiting = set(self._sinks)
            _touch(self.path)

        return alive


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

    @property
    def since(self) -> float:
        """When the last line was written (``time.monotonic``)."""
        return self._since

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
    from audit_pipeline.core.redaction import excerpt
    from audit_pipeline.forwarding.configured import check_sink_name
    from audit_pipeline.forwarding.deadletters import DeadLetterStore
    from audit_pipeline.storage.object_store import ObjectStore

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
        check_sink_name(settings, sink, also=", and no dead letters kept for it")
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
