"""Global dispatch on Redis (one Lua script) against the pure rules it implements.

The script must store exactly what `hotline_moves.offer` would, and choose exactly what
`hotline_routing.route` would over the pharmacists of live nodes. The node bus delivers notices.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator

import pytest

from careline.server.storage.redis_hotline_keys import HotlineKeys
from careline.server.storage.redis_storage import RedisStorage
from careline.signaling.errors import Conflict
from careline.signaling.hotline_call import Call, CallState
from careline.signaling.hotline_cluster import NodeNotice
from careline.signaling.hotline_moves import offer
from careline.signaling.hotline_routing import route
from careline.signaling.hotline_store import HotlineChange
from careline.signaling.presence import Presence, PresenceState
from tests.support import RedisServer, eventually

pytestmark = pytest.mark.redis

NOW = 1_700_000_123.456789
RING, FALLBACK = 20.0, 60.0


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
async def storage(redis: RedisServer, prefix: str) -> AsyncIterator[RedisStorage]:
    backend = RedisStorage(redis.url, prefix)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def queued(call_id: str, at: float, **fields: object) -> Call:
    call = Call(
        call_id=call_id,
        kiosk_id=f"k-{call_id}",
        order_id=f"o-{call_id}",
        skills=(),
        state=CallState.QUEUED,
        version=1,
        enqueued_at=at,
        kiosk_node="n-1",
    )
    return dataclasses.replace(call, **fields)  # type: ignore[arg-type]


def available(sub: str, idle_since: float, node: str = "n-1", **fields: object) -> Presence:
    presence = Presence(
        sub=sub,
        state=PresenceState.AVAILABLE,
        version=1,
        node=node,
        skills=(),
        since=idle_since,
        idle_since=idle_since,
    )
    return dataclasses.replace(presence, **fields)  # type: ignore[arg-type]


async def test_an_offer_stores_exactly_what_the_offer_move_would(storage: RedisStorage) -> None:
    call = queued("c1", NOW - 30.123456789, skills=("lang:es",), passed_by="ph0", offers=1)
    pharmacist = available("ph1", NOW - 99.987654321, skills=("lang:es", "licence:CA"))
    await storage.hotline.apply(HotlineChange(calls=(call,), presences=(pharmacist,)))
    await storage.hotline.heartbeat("n-1", NOW + 15)
    offered = await storage.hotline_dispatch.dispatch(NOW, RING, FALLBACK, 10)
    expected = offer(call, pharmacist, NOW, RING)
    assert [o.before for o in offered] == [call]
    assert [o.change for o in offered] == [expected]
    assert await storage.hotline.get_call("c1") == expected.calls[0]
    assert await storage.hotline.get_presence("ph1") == expected.presences[0]
    # Both are out of the indexes now: nothing more to offer, and a later apply still checks
    # the versions the script wrote.
    assert await storage.hotline_dispatch.dispatch(NOW, RING, FALLBACK, 10) == []
    with pytest.raises(Conflict, match="changed"):
        await storage.hotline.apply(HotlineChange(calls=(dataclasses.replace(call, version=2),)))


@pytest.mark.parametrize("seed", range(8))
async def test_dispatch_chooses_what_route_chooses_over_live_nodes(
    storage: RedisStorage, seed: int
) -> None:
    rng = random.Random(seed)
    skills = ["lang:es", "lang:fr", "licence:CA"]
    calls = [
        queued(
            f"c{i:02d}",
            NOW - rng.choice([5.0, 30.0, 30.0, 90.0]) - rng.random(),
            requeued=rng.random() < 0.3,
            skills=tuple(sorted(rng.sample(skills, rng.choice([0, 0, 1, 2])))),
            passed_by=rng.choice([None, "ph0", "ph1"]),
        )
        for i in range(rng.randint(1, 12))
    ]
    pharmacists = [
        available(
            f"ph{i}",
            NOW - rng.choice([10.0, 50.0, 50.0, 200.0]),  # ties: the sub decides
            node=rng.choice(["n-1", "n-2", "n-dead"]),
            skills=tuple(sorted(rng.sample(skills, rng.choice([0, 1, 2, 3])))),
            state=rng.choice([PresenceState.AVAILABLE] * 3 + [PresenceState.AWAY]),
        )
        for i in range(rng.randint(1, 8))
    ]
    await storage.hotline.apply(HotlineChange(calls=tuple(calls), presences=tuple(pharmacists)))
    await storage.hotline.heartbeat("n-1", NOW + 15)
    await storage.hotline.heartbeat("n-2", NOW + 0.5)
    await storage.hotline.heartbeat("n-dead", NOW - 0.5)
    live = [p for p in pharmacists if p.node != "n-dead"]
    expected = {a.call.call_id: a.pharmacist.sub for a in route(calls, live, NOW, FALLBACK)}
    offered = await storage.hotline_dispatch.dispatch(NOW, RING, FALLBACK, 100)
    got = {o.before.call_id: o.change.presences[0].sub for o in offered}
    assert got == expected
    order = [o.before.call_id for o in offered]
    assert order == sorted(
        order, key=lambda i: next(c for c in calls if c.call_id == i).queue_key()
    )


async def test_two_concurrent_rounds_never_offer_a_call_or_pharmacist_twice(
    storage: RedisStorage,
) -> None:
    calls = tuple(queued(f"c{i}", NOW - i) for i in range(10))
    pharmacists = tuple(available(f"ph{i}", NOW - 100 - i) for i in range(6))
    await storage.hotline.apply(HotlineChange(calls=calls, presences=pharmacists))
    await storage.hotline.heartbeat("n-1", NOW + 15)
    rounds = await asyncio.gather(
        *(storage.hotline_dispatch.dispatch(NOW, RING, FALLBACK, 2) for _ in range(5))
    )
    offered = [o for found in rounds for o in found]
    assert len(offered) == 6
    assert len({o.before.call_id for o in offered}) == 6
    assert len({o.change.presences[0].sub for o in offered}) == 6


async def test_reindex_rebuilds_the_routing_indexes(storage: RedisStorage, prefix: str) -> None:
    requeued = queued("c-late", NOW - 1, requeued=True)
    first = queued("c-early", NOW - 50)
    pharmacists = (available("ph-a", NOW - 10.123456789), available("ph-b", NOW - 10.123456788))
    await storage.hotline.apply(HotlineChange(calls=(first, requeued), presences=pharmacists))
    await storage.hotline.heartbeat("n-1", NOW + 15)
    keys = HotlineKeys.under(prefix)
    await storage.client.delete(keys.queue, keys.queue_requeued, keys.available)
    assert await storage.hotline_dispatch.dispatch(NOW, RING, FALLBACK, 10) == []
    await storage.hotline.reindex()
    offered = await storage.hotline_dispatch.dispatch(NOW, RING, FALLBACK, 10)
    assert [(o.before.call_id, o.change.presences[0].sub) for o in offered] == [
        ("c-late", "ph-a"),
        ("c-early", "ph-b"),
    ]


async def test_the_node_bus_delivers_notices_to_the_named_node(storage: RedisStorage) -> None:
    mine, other = storage.hotline_bus(), storage.hotline_bus()
    got: list[NodeNotice] = []
    await mine.start("n-1", got.append)
    try:
        await other.publish("n-2", NodeNotice(call_id="c-elsewhere"))
        await other.publish("n-1", NodeNotice(call_id="c1", sub="ph1"))
        await eventually(lambda: got)
        assert got == [NodeNotice(call_id="c1", sub="ph1")]
    finally:
        await mine.close()
        await mine.close()
