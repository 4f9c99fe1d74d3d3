"""A hook that sees every socket.io connect, event (with its ack) and disconnect of the edge.

The server's session recorder (`careline serve --record-sessions`) implements it. Calls are
synchronous and on the event loop, after the fact: an implementation must be quick, must not
block (buffer, and write from a thread), and must not raise.
"""

from __future__ import annotations

from typing import Any, Protocol

from careline.signaling.identity import Principal


class EventTap(Protocol):
    """Told what happened on the edge namespaces; never changes it."""

    def connected(self, namespace: str, sid: str, principal: Principal) -> None:
        """An authenticated socket joined `namespace`."""

    def handled(self, namespace: str, sid: str, event: str, payload: Any, ack: Any) -> None:
        """A client event arrived at `namespace` and was answered with `ack`."""

    def disconnected(self, namespace: str, sid: str) -> None:
        """A socket left `namespace`."""
