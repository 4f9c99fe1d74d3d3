"""What the signaling edge reports about itself; server/ implements it with Prometheus metrics."""

from __future__ import annotations

from typing import Protocol


class SignalingObserver(Protocol):
    """Counters fed by the socket.io edge. Labels are roles, event names and codes: never ids."""

    def connected(self, namespace: str, role: str) -> None: ...

    def disconnected(self, namespace: str, role: str) -> None: ...

    def refused(self, namespace: str, code: str) -> None: ...

    def handled(self, event: str, outcome: str) -> None: ...


class NullObserver:
    """An observer that records nothing (for tests of signaling alone)."""

    def connected(self, namespace: str, role: str) -> None:
        """Ignore."""

    def disconnected(self, namespace: str, role: str) -> None:
        """Ignore."""

    def refused(self, namespace: str, code: str) -> None:
        """Ignore."""

    def handled(self, event: str, outcome: str) -> None:
        """Ignore."""
