"""The nodes of a deployment: who is alive, where clients reach them, and how loaded they are.

Every `careline serve` process on the Redis backend heartbeats one NodeInfo (its id is also its
hotline node id); a node whose lease ran out is dead. The registry is the store; the choice of
the least loaded node is the pure `least_loaded` below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec


class NodeLoad(msgspec.Struct, frozen=True):
    """What a node serves, as of its last heartbeat (counts only, never ids)."""

    #: visit participants with a live (or reconnecting) connection to the node
    participants: int = 0
    #: visits with at least one such participant
    visits: int = 0
    #: encoded streams forwarded to subscribers (bound subscriber slots)
    forwarded_streams: int = 0
    #: process CPU since the previous heartbeat, in percent of one core
    cpu_percent: float = 0.0
    #: visits placed on the node since its last heartbeat (added by the registry, not reported)
    placed_since_heartbeat: int = 0


class NodeInfo(msgspec.Struct, frozen=True):
    """One node's registry record."""

    node_id: str
    url: str
    load: NodeLoad
    heartbeat_at: float
    lease_until: float
    started_at: float


class NodeRegistry(Protocol):
    """The shared registry of nodes (StoreUnavailable when it cannot be reached)."""

    async def heartbeat(self, info: NodeInfo) -> None:
        """Store `info`; the node counts as alive until `info.lease_until`."""
        ...

    async def live(self, now: float) -> Sequence[NodeInfo]:
        """Every node whose lease runs past `now`, by node id."""
        ...

    async def leave(self, node_id: str) -> None:
        """Remove a node at once (a clean shutdown)."""
        ...


def least_loaded(nodes: Sequence[NodeInfo]) -> NodeInfo:
    """The node to place new work on: fewest participants, then visits, forwarded streams, CPU.

    Ties go to the smaller node id, so every node choosing from the same records agrees.
    Loads are as of each node's last heartbeat, plus the visits placed on it since then (each
    counted as one participant and one visit until the heartbeat reports them).
    """
    if not nodes:
        raise ValueError("no live node to choose from")
    return min(
        nodes,
        key=lambda n: (
            n.load.participants + n.load.placed_since_heartbeat,
            n.load.visits + n.load.placed_since_heartbeat,
            n.load.forwarded_streams,
            n.load.cpu_percent,
            n.node_id,
        ),
    )
