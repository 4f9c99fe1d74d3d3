"""Hotline metrics on the process registry: call events, dispatch and answer times, figures.

Labels are bounded sets (call events, presence states), never kiosk, call, order or pharmacist
ids. The figures (ASA, abandonment rate, service level, queue length, pharmacists by state) are
those of the last refresh by the HotlineService (every `hotline.position_update_seconds`); with
Redis every node reports the same shared figures. A figure with no calls behind it is NaN.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from careline.signaling.hotline_stats import HotlineStats
from careline.signaling.presence import PresenceState

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_WAIT_BUCKETS = (1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class HotlineMetrics:
    """The HotlineObserver of a process, exporting on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "careline_hotline_calls",
            "Hotline call events (enqueued, offered, accepted, ring_timeout, declined, "
            "pharmacist_disconnected, abandoned, completed, callback, callback_offered)",
            ["event"],
            registry=registry,
        )
        self.dispatch_seconds = Histogram(
            "careline_hotline_dispatch_seconds",
            "Time from a call being placed to its first pharmacist ringing",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.answer_seconds = Histogram(
            "careline_hotline_answer_seconds",
            "Speed of answer: time from a call being placed to a pharmacist accepting it",
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )
        self.queue_length = Gauge(
            "careline_hotline_queue_length", "Calls waiting in the queue", registry=registry
        )
        self.longest_wait = Gauge(
            "careline_hotline_longest_wait_seconds",
            "How long the longest-waiting queued call has waited",
            registry=registry,
        )
        self.pharmacists = Gauge(
            "careline_hotline_pharmacists",
            "Pharmacists by presence state",
            ["state"],
            registry=registry,
        )
        self.asa = Gauge(
            "careline_hotline_asa_seconds",
            "Average speed of answer over the stats window (hotline.stats_window_seconds)",
            registry=registry,
        )
        self.abandonment = Gauge(
            "careline_hotline_abandonment_ratio",
            "Abandoned / (answered + abandoned) calls over the stats window",
            registry=registry,
        )
        self.service_level = Gauge(
            "careline_hotline_service_level_ratio",
            "Calls answered within hotline.service_level_seconds / (answered + abandoned), "
            "over the stats window",
            registry=registry,
        )
        for state in PresenceState:
            self.pharmacists.labels(state.value).set(0)
        for gauge in (self.asa, self.abandonment, self.service_level):
            gauge.set(math.nan)

    def call_event(self, event: str) -> None:
        """Count a call event."""
        self.calls.labels(event).inc()

    def dispatched(self, seconds: float) -> None:
        """Observe a placed-to-ringing time."""
        self.dispatch_seconds.observe(seconds)

    def answered(self, seconds: float) -> None:
        """Observe a speed of answer."""
        self.answer_seconds.observe(seconds)

    def snapshot(self, stats: HotlineStats) -> None:
        """Set the figures from the service's latest summary."""
        self.queue_length.set(stats.queue_length)
        self.longest_wait.set(stats.longest_wait_seconds)
        for state, count in stats.pharmacists.items():
            self.pharmacists.labels(state).set(count)
        for gauge, value in (
            (self.asa, stats.asa_seconds),
            (self.abandonment, stats.abandonment_rate),
            (self.service_level, stats.service_level),
        ):
            gauge.set(math.nan if value is None else value)
