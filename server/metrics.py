"""Prometheus metrics of one process, on a registry of its own (served at /metrics).

Labels are routes, methods, statuses, roles, event names and error codes: never ids, names,
tokens or message text.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from careline.server import __version__
from careline.server.metric_counts import LabelCounter, PlainHistogram


class Metrics:
    """Every metric Careline exports; also the SignalingObserver of the socket.io edge."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        Info("careline_build", "Careline build information", registry=self.registry).info(
            {"version": __version__}
        )
        self.http_requests = Counter(
            "careline_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "careline_http_request_seconds",
            "HTTP request handling time by route template",
            ["route"],
            registry=self.registry,
        )
        self.sockets = Gauge(
            "careline_socket_connections",
            "Connected socket.io clients by namespace and role",
            ["namespace", "role"],
            registry=self.registry,
        )
        self.refused_connects = Counter(
            "careline_socket_refused",
            "Refused socket.io connects by namespace and reason code",
            ["namespace", "code"],
            registry=self.registry,
        )
        self.events = LabelCounter(
            "careline_socket_events",
            "Handled socket.io events by event name and outcome (ok or an error code)",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "careline_http_auth_failures",
            "Refused HTTP credentials by reason code",
            ["code"],
            registry=self.registry,
        )

        self.thread_entries = LabelCounter(
            "careline_thread_entries",
            "Thread timeline entries by kind (message, system, edit, delete) and outcome "
            "(stored, duplicate)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.thread_store_seconds = PlainHistogram(
            "careline_thread_store_seconds",
            "Time from a thread write to its durable acknowledgement by the store",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.thread_purged = Counter(
            "careline_thread_purged",
            "Threads and attachments removed by the retention purge",
            ["what"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    # SignalingObserver
    def connected(self, namespace: str, role: str) -> None:
        """Count a connected socket."""
        self.sockets.labels(namespace, role).inc()

    def disconnected(self, namespace: str, role: str) -> None:
        """Uncount a disconnected socket."""
        self.sockets.labels(namespace, role).dec()

    def refused(self, namespace: str, code: str) -> None:
        """Count a refused connect."""
        self.refused_connects.labels(namespace, code).inc()

    def handled(self, event: str, outcome: str) -> None:
        """Count a handled event."""
        self.events.inc((event, outcome))

    # ThreadObserver
    def message_stored(self, kind: str, duplicate: bool, seconds: float) -> None:
        """Count a stored (or deduplicated) timeline entry and its store latency."""
        self.thread_entries.inc((kind, "duplicate" if duplicate else "stored"))
        self.thread_store_seconds.observe(seconds)

    def purged(self, threads: int, attachments: int) -> None:
        """Count what the retention purge removed."""
        self.thread_purged.labels("threads").inc(threads)
        self.thread_purged.labels("attachments").inc(attachments)
