"""Wires a node into a deployment of several processes on one Redis.

With the Redis backend: the node registry heartbeat (ClusterNode), visit placement (the visit
service tells a join on the wrong node where to go) and the room relay for message-visit
pushes. With SQLite (one process) none of it exists and nothing changes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from careline.server.app_keys import CLUSTER, MEDIA, RELAYED_CHANNEL, ROOM_BUS, VISITS
from careline.server.cluster_metrics import ClusterCollector
from careline.server.cluster_node import ClusterNode, CpuMeter
from careline.server.metrics import Metrics
from careline.server.settings import Settings
from careline.server.storage.redis_storage import RedisStorage
from careline.signaling.node_registry import NodeLoad
from careline.signaling.room_relay import RelayedChannel
from careline.signaling.thread_service import ThreadChannel, ThreadService
from careline.signaling.visit_placement import VisitPlacer

log = logging.getLogger(__name__)


def add_cluster_node(
    app: web.Application,
    storage: RedisStorage,
    settings: Settings,
    node_id: str,
    clock: Callable[[], float],
) -> tuple[ClusterNode, VisitPlacer]:
    """The node's registry heartbeat and the visit placer that uses it.

    The load is read from the visit service and the SFU at each heartbeat.
    """
    cpu = CpuMeter()

    def load() -> NodeLoad:
        census = app[VISITS].census()
        totals = app[MEDIA].totals()
        return NodeLoad(
            participants=sum(census.participants.values()),
            visits=census.active_visits,
            forwarded_streams=totals.forwarded_streams,
            cpu_percent=cpu.read(),
        )

    node = app[CLUSTER] = ClusterNode(
        node_id,
        storage.nodes,
        lease_seconds=settings.cluster.node_lease_seconds,
        load=load,
        public_url=settings.cluster.public_url,
        clock=clock,
        after_beat=lambda: app[VISITS].hand_over_moved(),
    )
    placer = VisitPlacer(
        node_id, storage.nodes, storage.visit_placement, node.info, clock, node.settling
    )
    return node, placer


def relay_threads(
    app: web.Application,
    storage: RedisStorage,
    node: ClusterNode,
    threads: ThreadService,
    local: ThreadChannel,
    metrics: Metrics,
) -> None:
    """Send message-visit pushes to the sockets of every node (see signaling/room_relay.py)."""
    bus = app[ROOM_BUS] = storage.room_bus()
    channel = RelayedChannel(local, bus, node.node_id, node.has_peers)
    threads.bind(channel)
    metrics.registry.register(ClusterCollector(node, bus))
    app[RELAYED_CHANNEL] = channel


async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    """Heartbeats and the room relay run while the store is open; the node leaves first."""
    node = app.get(CLUSTER)
    bus = app.get(ROOM_BUS)
    channel = app.get(RELAYED_CHANNEL)
    if node is None or bus is None or channel is None:
        yield
        return
    await bus.start(channel.deliver)
    node.start()
    log.info("cluster node %s started", node.node_id)
    try:
        yield
    finally:
        await node.close()
        await bus.close()
