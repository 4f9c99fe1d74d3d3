"""Prometheus metrics of one process, on a registry of its own (served at /metrics).

Labels are routes, methods, statuses, roles, event names and error codes: never ids, names,
tokens or message text.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from careline.server import __version__


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
        self.events = Counter(
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
        self.events.labels(event, outcome).inc()
