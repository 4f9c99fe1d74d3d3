"""The node registry, visit placement and room relay on a real redis-server.

Times are explicit arguments (Unix seconds), so leases run out without waiting.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from careline.server.storage.redis_cluster_keys import ClusterKeys
from careline.server.storage.redis_storage import RedisStorage
from careline.signaling.node_registry import NodeInfo, NodeLoad, least_loaded
from careline.signaling.room_relay import RoomPush
from careline.signaling.visit_placement import VisitPlacer
from tests.support import RedisServer, eventually

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
async def storage(redis: RedisServer, prefix: str) -> AsyncIterator[RedisStorage]:
    store = RedisStorage(redis.url, prefix)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def node(node_id: str, at: float, lease: float = 6.0, participants: int = 0) -> NodeInfo:
    return NodeInfo(
        node_id=node_id,
        url=f"http://{node_id}.test",
        load=NodeLoad(participants=participants),
        heartbeat_at=at,
        lease_until=at + lease,
        started_at=0.0,
    )


async def test_a_node_is_live_until_its_lease_runs_out(storage: RedisStorage) -> None:
    await storage.nodes.heartbeat(node("n-a", at=100.0))
    await storage.nodes.heartbeat(node("n-b", at=103.0))
    assert [n.node_id for n in await storage.nodes.live(105.0)] == ["n-a", "n-b"]
    assert [n.node_id for n in await storage.nodes.live(106.0)] == ["n-b"]
    await storage.nodes.heartbeat(node("n-a", at=106.5, participants=3))
    live = await storage.nodes.live(107.0)
    assert [(n.node_id, n.load.participants) for n in live] == [("n-a", 3), ("n-b", 0)]
    await storage.nodes.leave("n-b")
    assert [n.node_id for n in await storage.nodes.live(107.0)] == ["n-a"]


async def test_records_of_long_dead_nodes_are_dropped_by_the_next_heartbeat(
    storage: RedisStorage, prefix: str
) -> None:
    await storage.nodes.heartbeat(node("n-old", at=0.0))
    await storage.nodes.heartbeat(node("n-new", at=10_000.0))
    raw = await storage.client.hkeys(ClusterKeys.under(prefix).nodes)
    assert raw == [b"n-new"]


def test_the_least_loaded_node_wins_and_ties_go_to_the_smaller_id() -> None:
    busy, idle, idle_too = node("n-b", 0, participants=4), node("n-c", 0), node("n-a", 0)
    assert least_loaded([busy, idle]).node_id == "n-c"
    assert least_loaded([busy, idle, idle_too]).node_id == "n-a"
    with pytest.raises(ValueError, match="no live node"):
        least_loaded([])


async def test_a_visit_stays_on_its_live_owner_and_moves_when_the_owner_dies(
    storage: RedisStorage,
) -> None:
    placement = storage.visit_placement
    await storage.nodes.heartbeat(node("n-a", at=100.0))
    await storage.nodes.heartbeat(node("n-b", at=103.0))
    assert await placement.place("v-1", "n-a", now=101.0) == "n-a"
    assert await placement.place("v-1", "n-b", now=102.0) == "n-a"  # owner alive: kept
    assert await placement.place("v-1", "n-b", now=106.5) == "n-b"  # owner's lease ran out
    assert await placement.place("v-1", "n-a", now=106.6) == "n-b"


async def test_two_placers_agree_on_one_owner(storage: RedisStorage) -> None:
    now = 1000.0
    for name in ("n-a", "n-b"):
        await storage.nodes.heartbeat(node(name, at=now, participants=0 if name == "n-a" else 1))

    def placer(node_id: str) -> VisitPlacer:
        return VisitPlacer(
            node_id,
            storage.nodes,
            storage.visit_placement,
            lambda: node(node_id, at=now),
            clock=lambda: now + 1,
        )

    owners = await asyncio.gather(
        *(placer(n).owner(f"v-{i}") for i in range(20) for n in ("n-a", "n-b"))
    )
    by_visit: dict[str, set[str]] = {}
    for index, owner in enumerate(owners):
        by_visit.setdefault(f"v-{index // 2}", set()).add(owner.node_id)
    assert all(len(found) == 1 for found in by_visit.values())  # one owner per visit


async def test_visits_placed_since_a_heartbeat_count_until_the_next(
    storage: RedisStorage,
) -> None:
    for name in ("n-a", "n-b"):
        await storage.nodes.heartbeat(node(name, at=100.0))
    placement = storage.visit_placement
    assert await placement.place("v-1", "n-a", now=101.0) == "n-a"
    assert await placement.place("v-2", "n-a", now=101.0) == "n-a"
    assert await placement.place("v-1", "n-b", now=101.5) == "n-a"  # kept: not counted again
    live = {n.node_id: n.load for n in await storage.nodes.live(102.0)}
    assert live["n-a"].placed_since_heartbeat == 2
    assert live["n-b"].placed_since_heartbeat == 0
    assert least_loaded(list(await storage.nodes.live(102.0))).node_id == "n-b"
    # n-a's next heartbeat reports its load itself: the count starts over.
    await storage.nodes.heartbeat(node("n-a", at=103.0, participants=2))
    live = {n.node_id: n.load for n in await storage.nodes.live(104.0)}
    assert live["n-a"].placed_since_heartbeat == 0
    assert live["n-a"].participants == 2


async def test_room_pushes_reach_the_other_nodes(storage: RedisStorage) -> None:
    sender, receiver = storage.room_bus(), storage.room_bus()
    received: list[RoomPush] = []

    async def deliver(push: RoomPush) -> None:
        received.append(push)

    async def ignore(push: RoomPush) -> None:
        return None

    await receiver.start(deliver)
    await sender.start(ignore)
    try:
        for index in range(300):  # more than one pipeline
            sender.publish(RoomPush("n-a", "thread.message", {"i": index}, ["user:fam-1"]))
        await eventually(lambda: len(received) == 300, within=5)
        assert [p.data["i"] for p in received] == list(range(300))
        await eventually(lambda: sender.relayed == 300, within=5)  # counted after the reply
        assert sender.dropped == 0
    finally:
        await sender.close()
        await receiver.close()
        await receiver.close()  # safe twice
