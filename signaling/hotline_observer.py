"""What the hotline reports about itself; server/ implements it with Prometheus metrics.

Labels are bounded: call events, end reasons and presence states, never ids.
"""

from __future__ import annotations

from typing import Protocol

from careline.signaling.hotline_stats import HotlineStats


class HotlineObserver(Protocol):
    """Counters and gauges fed by the HotlineService."""

    def call_event(self, event: str) -> None:
        """A call was enqueued, offered, accepted, re-queued, ended, ... (see docs/protocol.md)."""

    def dispatched(self, seconds: float) -> None:
        """A call rang its first pharmacist `seconds` after it was placed."""

    def answered(self, seconds: float) -> None:
        """A call was answered `seconds` after it was placed (speed of answer)."""

    def snapshot(self, stats: HotlineStats) -> None:
        """The latest service-level figures, queue length and pharmacists by state."""


class NullHotlineObserver:
    """Records nothing (for tests of signaling alone)."""

    def call_event(self, event: str) -> None:
        """Ignore."""

    def dispatched(self, seconds: float) -> None:
        """Ignore."""

    def answered(self, seconds: float) -> None:
        """Ignore."""

    def snapshot(self, stats: HotlineStats) -> None:
        """Ignore."""
