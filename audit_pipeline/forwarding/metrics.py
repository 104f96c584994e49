"""Prometheus metrics of a follower (``forward ... --metrics-port PORT``), with ``prometheus-client``.

Operators alert on what they scrape: per sink, the events delivered and dead-lettered, the send
retries, and the lag (the age of the oldest event not yet delivered, measured at every probe,
so it keeps growing while a sink fails).  The Dagster lag asset shows the same lag from the
sensor's side; these come from the process doing the work, every second or so.

Metric names (all labelled ``sink``):

* ``audit_pipeline_forward_delivered_events_total`` (late events found by the sweep included)
* ``audit_pipeline_forward_dead_lettered_events_total``
* ``audit_pipeline_forward_retries_total``: sends that failed for a passing reason and were retried
* ``audit_pipeline_forward_failed_passes_total``: passes that stopped with the sink still failing
* ``audit_pipeline_forward_lag_seconds``
* ``audit_pipeline_forward_last_pass_timestamp_seconds``: when the sink's last pass ended (Unix time)
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.forwarding.engine import Forwarder
from audit_pipeline.forwarding.results import PassResult

PREFIX = "audit_pipeline_forward"


class FollowerMetrics:
    """The follower's metrics, in a registry of their own (nothing else of the process is exported)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["sink"]
        self.delivered = Counter(f"{PREFIX}_delivered_events", "Events the sink acknowledged.", labels, registry=self.registry)
        self.dead_lettered = Counter(
            f"{PREFIX}_dead_lettered_events", "Events the sink rejected for good, kept in the dead-letter store.", labels, registry=self.registry
        )
        self.retries = Counter(
            f"{PREFIX}_retries", "Sends retried after a passing failure (5xx, 429, timeouts, refused connections).", labels, registry=self.registry
        )
        self.failed_passes = Counter(
            f"{PREFIX}_failed_passes", "Passes that stopped before their horizon because the sink kept failing.", labels, registry=self.registry
        )
        self.lag = Gauge(f"{PREFIX}_lag_seconds", "Age of the oldest event not yet delivered to the sink (0 when none waits).", labels, registry=self.registry)
        self.last_pass = Gauge(f"{PREFIX}_last_pass_timestamp_seconds", "When the sink's last pass ended (Unix time).", labels, registry=self.registry)
        self._server: Any = None

    def watch(self, forwarder: Forwarder) -> None:
        """Count this forwarder's retries and lag (its passes are counted by :meth:`record`)."""
        sink = forwarder.sink.name
        for metric in (self.delivered, self.dead_lettered, self.retries, self.failed_passes):
            metric.labels(sink=sink)  # present at 0 from the start, so rate() and absent() work
        lag = self.lag.labels(sink=sink)
        retries = self.retries.labels(sink=sink)
        previous_lag, previous_retry = forwarder.on_lag, forwarder.on_retry

        def on_lag(seconds: float) -> None:
            lag.set(seconds)
            previous_lag(seconds)

        def on_retry() -> None:
            retries.inc()
            previous_retry()

        forwarder.on_lag = on_lag
        forwarder.on_retry = on_retry

    def record(self, result: PassResult) -> None:
        sink = result.sink
        if result.delivered:
            self.delivered.labels(sink=sink).inc(result.delivered)
        if result.dead_lettered:
            self.dead_lettered.labels(sink=sink).inc(result.dead_lettered)
        if result.stopped:
            self.failed_passes.labels(sink=sink).inc()
        self.last_pass.labels(sink=sink).set(time.time())

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:  # noqa: S104 - scraped from outside the pod/host by design
        """Serve ``/metrics`` on ``addr:port`` on a daemon thread; returns the port (useful with 0)."""
        try:
            server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {port}: cannot listen on {addr}:{port} ({exc.strerror}); choose a free port") from None
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
