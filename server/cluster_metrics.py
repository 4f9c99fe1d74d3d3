"""Cluster metrics at scrape time: live nodes, this node's reported load, the room relay.

Read from what the heartbeat and the relay already keep in memory: a scrape never asks Redis.
Labels are bounded (load kinds); node ids and URLs are not labels (GET /api/cluster/nodes
lists them for admins).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from careline.server.cluster_node import ClusterNode
from careline.server.storage.redis_room_bus import RedisRoomBus


class ClusterCollector:
    """A prometheus_client collector of the node registry and the room relay."""

    def __init__(self, node: ClusterNode, bus: RedisRoomBus) -> None:
        self._node = node
        self._bus = bus

    def describe(self) -> Iterator[Metric]:
        """The metric families (names only) for the registry's duplicate check."""
        return self._families(collecting=False)

    def collect(self) -> Iterator[Metric]:
        """The current values."""
        return self._families(collecting=True)

    def _families(self, collecting: bool) -> Iterator[Metric]:
        nodes = GaugeMetricFamily(
            "careline_cluster_live_nodes", "Live nodes in the registry as of the last heartbeat"
        )
        load = GaugeMetricFamily(
            "careline_cluster_node_load",
            "The load this node reported in its last heartbeat, by kind",
            labels=["kind"],
        )
        heartbeats = CounterMetricFamily(
            "careline_cluster_heartbeats", "Heartbeats of this node, by outcome", labels=["outcome"]
        )
        relay = CounterMetricFamily(
            "careline_cluster_room_pushes",
            "Room pushes relayed between nodes, by direction (sent, received, dropped)",
            labels=["direction"],
        )
        if collecting:
            node = self._node
            nodes.add_metric([], len(node.live_nodes))
            reported = node.info().load
            load.add_metric(["participants"], reported.participants)
            load.add_metric(["visits"], reported.visits)
            load.add_metric(["forwarded_streams"], reported.forwarded_streams)
            load.add_metric(["cpu_percent"], reported.cpu_percent)
            heartbeats.add_metric(["ok"], node.heartbeats)
            heartbeats.add_metric(["failed"], node.failed_heartbeats)
            relay.add_metric(["sent"], self._bus.relayed)
            relay.add_metric(["received"], self._bus.received)
            relay.add_metric(["dropped"], self._bus.dropped)
        yield from (nodes, load, heartbeats, relay)
