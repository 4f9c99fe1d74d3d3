"""What a node needs to share the hotline with other nodes: global dispatch and node notices.

On a single node (SQLite) neither exists: routing picks among this node's pharmacists and every
push starts here. With several nodes (Redis) the store routes every queued call to the globally
longest-idle available pharmacist in one atomic step (`SharedDispatch`), and a node that changed
a call or presence of a socket held by another node tells that node at once (`NodeBus`), so the
ring reaches a pharmacist whatever node dispatched it. A call's media lives on its kiosk's node
(`Call.kiosk_node`); the node registry tells a pharmacist on another node where that is.
Notices are hints: the receiver reads the
store, and every sweep catches up anyway, so a lost notice only delays a push by a sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from careline.signaling.hotline_call import Call
from careline.signaling.hotline_store import HotlineChange
from careline.signaling.node_registry import NodeRegistry


class NodeNotice(msgspec.Struct, frozen=True):
    """Look at this call and/or this pharmacist's presence again (ids only)."""

    call_id: str | None = None
    sub: str | None = None


class NodeBus(Protocol):
    """Sends notices to one node (Redis pub/sub; at most once, unordered across senders)."""

    async def publish(self, node: str, notice: NodeNotice) -> None:
        """Send `notice` to `node` (StoreUnavailable if the bus cannot be reached)."""
        ...


@dataclass(frozen=True, slots=True)
class Offered:
    """One offer shared dispatch stored: the call as it was, and the stored change."""

    before: Call
    change: HotlineChange


class SharedDispatch(Protocol):
    """Routing over the store shared by every node, atomic in the store."""

    async def dispatch(
        self, now: float, ring_seconds: float, fallback_seconds: float, limit: int
    ) -> Sequence[Offered]:
        """Offer queued calls (head first) to the longest-idle available pharmacists.

        The same rules as `hotline_routing.route`, over every node's pharmacists whose node's
        lease runs past `now`, and the same move as `hotline_moves.offer`; checked and stored
        in one atomic step, at most `limit` offers.
        """
        ...


@dataclass(frozen=True, slots=True)
class HotlineCluster:
    """The shared parts a multi-node deployment hands the hotline service."""

    dispatch: SharedDispatch
    bus: NodeBus
    #: where clients reach each node: a call's media lives on its kiosk's node, and a side on
    #: another node is sent there (`hotline.wrong_node`)
    nodes: NodeRegistry
