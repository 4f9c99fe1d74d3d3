"""Room pushes that reach sockets on every node: a ThreadChannel that also relays over a bus.

A message-visit push (new message, read horizon, typing, queue change) goes to rooms whose
sockets may be connected to any node. The RelayedChannel emits to this node's sockets at once
(python-socketio's in-process fast path in server/socket_server.py) and, when other nodes are
alive, hands the push to a RoomBus that carries it to them; each of them emits it to its own
sockets. The bus is a hint like every push: clients resync from the store with `after_seq`.

Why not python-socketio's AsyncRedisManager: it sends every emit of every namespace through
Redis (visit media offers, hotline pushes) and gives up the one-encode fast path; here only
the thread pushes travel, already encoded once, one PUBLISH per push on a pipelined publisher,
and none at all while this node is the only one alive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from careline.signaling.thread_service import ThreadChannel


class RoomPush(msgspec.Struct, frozen=True):
    """One push for other nodes: the event, its plain payload and the rooms it goes to."""

    origin: str
    event: str
    data: Any
    rooms: list[str]


class RoomBus(Protocol):
    """Carries RoomPushes to every other node (at most once; may drop under pressure)."""

    def publish(self, push: RoomPush) -> None:
        """Queue `push` for the other nodes; never waits."""
        ...


class RelayedChannel:
    """The ThreadChannel of a node with peers: local emit, then a relay to the other nodes.

    Concurrency: `emit` and `deliver` run on the event loop; `deliver` is called by the bus's
    reader task for pushes from other nodes.
    """

    def __init__(
        self,
        local: ThreadChannel,
        bus: RoomBus,
        node_id: str,
        has_peers: Callable[[], bool],
    ) -> None:
        self._local = local
        self._bus = bus
        self._node_id = node_id
        self._has_peers = has_peers

    async def emit(
        self, event: str, data: Any, to: str | list[str], skip_sid: str | None = None
    ) -> None:
        """Send `event` to these rooms on this node and (if any are alive) on the others."""
        await self._local.emit(event, data, to, skip_sid)
        if self._has_peers():
            rooms = [to] if isinstance(to, str) else list(to)
            self._bus.publish(RoomPush(self._node_id, event, msgspec.to_builtins(data), rooms))

    async def deliver(self, push: RoomPush) -> None:
        """A push relayed by another node: emit it to this node's sockets in its rooms."""
        if push.origin != self._node_id and push.rooms:
            await self._local.emit(push.event, push.data, push.rooms)
