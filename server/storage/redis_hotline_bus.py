"""Notices between hotline nodes over Redis pub/sub: one channel per node.

A node that changed a call or presence of a socket held by another node publishes a NodeNotice
(ids only) on that node's channel; the node reads the records again and pushes to its sockets.
Pub/sub delivers at most once and only while subscribed: a notice lost in a reconnect (the
RedisSubscription subscribes again once Redis is back) is made up by the receiver's next sweep,
which catches up from the store.

This is deliberately not python-socketio's AsyncRedisManager: that would send every emit of
every namespace through Redis, while only the hotline needs to reach other nodes, and only with
a hint. Media between a kiosk and a pharmacist on different nodes is not forwarded (issue 8).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
import redis.asyncio as aioredis

from careline.server.storage.redis_errors import redis_unavailable
from careline.server.storage.redis_hotline_keys import HotlineKeys
from careline.server.storage.redis_subscription import RedisSubscription
from careline.signaling.hotline_cluster import NodeNotice

log = logging.getLogger(__name__)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(NodeNotice)


class RedisHotlineBus:
    """NodeBus on Redis; `start` listens on this node's channel until `close`.

    Concurrency: `publish` may be called from any task; `deliver` is called on the event loop
    from the one reader task this object owns.
    """

    def __init__(self, client: aioredis.Redis, keys: HotlineKeys) -> None:
        self._client = client
        self._keys = keys
        self._subscription: RedisSubscription | None = None

    async def publish(self, node: str, notice: NodeNotice) -> None:
        """Send a notice to `node` (StoreUnavailable if Redis cannot be reached)."""
        async with redis_unavailable():
            await self._client.publish(self._keys.channel_of(node), _encoder.encode(notice))

    async def start(self, node: str, deliver: Callable[[NodeNotice], None]) -> None:
        """Subscribe to `node`'s channel and hand every notice to `deliver`."""
        if self._subscription is not None:
            return

        async def received(data: bytes) -> None:
            try:
                notice = _decoder.decode(data)
            except msgspec.DecodeError:
                log.warning("hotline node bus: an undecodable notice was dropped")
                return
            deliver(notice)

        channel = self._keys.channel_of(node)
        subscription = RedisSubscription(self._client, channel, "hotline node bus")
        await subscription.start(received)
        self._subscription = subscription

    async def close(self) -> None:
        """Stop listening and release the subscription's connection; safe twice."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.close()
