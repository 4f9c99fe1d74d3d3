"""Which node holds a visit's media: the least loaded live node when the visit starts.

Any node answers HTTP and socket.io, but one visit's peer connections all live on one node's
SFU. The placement is recorded in the shared store; a join on another node is told to go to the
owner (`visit.wrong_node`). When the owner's lease has run out, the next join places the visit
again on a live node; participants keep their admitted state (it is in the visit store).

Right after a Redis outage every lease may have run out although the nodes are alive: while
this node is *settling* (it lost Redis within the last lease) a recorded owner is kept whatever
its lease says, and a join whose owner has not heartbeated again yet is refused with
StoreUnavailable (clients retry) instead of splitting the visit over two nodes.

A node cut off from the cluster (Redis or its network) for longer than its lease keeps serving
the visits it holds, while a join elsewhere may place one of them again on another node. Once it
is back, `moved_away` finds those visits, and the visit service sends their participants to the
new owner (`visit.moved`), so the visit is whole again on one node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

import msgspec

from careline.signaling.errors import StoreUnavailable
from careline.signaling.node_registry import NodeInfo, NodeRegistry, least_loaded


class PlacementStore(Protocol):
    """The recorded owner of each visit (atomic in the store)."""

    async def place(self, visit_id: str, candidate: str, now: float) -> str:
        """The owner of `visit_id`: the recorded one while its lease runs past `now`, else
        `candidate`, recorded in the same atomic step. StoreUnavailable if unreachable."""
        ...

    async def owners(self, visit_ids: Sequence[str]) -> dict[str, str | None]:
        """The recorded owner of each visit (None: no record), placing nothing."""
        ...


class VisitPlacer:
    """Finds (or chooses) the node that owns a visit's media, for the node `node_id`.

    Concurrency: any task may call `owner`; the store's atomic step decides between nodes.
    """

    def __init__(
        self,
        node_id: str,
        registry: NodeRegistry,
        store: PlacementStore,
        me: Callable[[], NodeInfo],
        clock: Callable[[], float] = time.time,
        settling: Callable[[], bool] = lambda: False,
    ) -> None:
        self.node_id = node_id
        self._settling = settling
        self._registry = registry
        self._store = store
        self._me = me
        self._clock = clock

    async def owner(self, visit_id: str) -> NodeInfo:
        """The live node holding `visit_id`'s media, placing the visit if it has none."""
        for _ in range(2):
            now = self._clock()
            settling = self._settling()
            live = {node.node_id: node for node in await self._registry.live(now)}
            # The node serving this join is alive: its own load is fresher than its record,
            # but visits placed on it since its heartbeat are counted only in the registry.
            me = self._me()
            recorded = live.get(self.node_id)
            if recorded is not None and recorded.load.placed_since_heartbeat:
                placed = recorded.load.placed_since_heartbeat
                me = msgspec.structs.replace(
                    me, load=msgspec.structs.replace(me.load, placed_since_heartbeat=placed)
                )
            live[self.node_id] = me
            candidate = least_loaded(list(live.values()))
            # While settling, every recorded owner counts as alive (no lease ends before 0).
            owner = await self._store.place(visit_id, candidate.node_id, 0.0 if settling else now)
            if owner in live:
                return live[owner]
            if settling:
                raise StoreUnavailable("the cluster is settling after a Redis outage; try again")
            # The owner's record appeared (or its lease was renewed) after we read the
            # registry: read it again.
        raise StoreUnavailable("the node registry changed while placing a visit")

    async def moved_away(self, visit_ids: Collection[str]) -> dict[str, NodeInfo]:
        """Of `visit_ids` (served here), those recorded on another live node, with that node.
        Nothing while settling after an outage (the leases are not trusted yet)."""
        if not visit_ids or self._settling():
            return {}
        owners = await self._store.owners(sorted(visit_ids))
        elsewhere = {v: o for v, o in owners.items() if o is not None and o != self.node_id}
        if not elsewhere:  # the usual answer: one read, no registry read
            return {}
        live = {node.node_id: node for node in await self._registry.live(self._clock())}
        return {visit_id: live[owner] for visit_id, owner in elsewhere.items() if owner in live}
