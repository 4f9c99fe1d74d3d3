"""Notices between hotline nodes over Redis pub/sub: one channel per node.

A node that changed a call or presence of a socket held by another node publishes a NodeNotice
(ids only) on that node's channel; the node reads the records again and pushes to its sockets.
Pub/sub delivers at most once and only while subscribed: a notice lost in a reconnect is made
up by the receiver's next sweep, which catches up from the store.

This is deliberately not python-socketio's AsyncRedisManager: that would send every emit of
every namespace through Redis, while only the hotline needs to reach other nodes, and only with
a hint. Media between a kiosk and a pharmacist on different nodes is not forwarded (issue 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import msgspec
import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions

from careline.server.storage.redis_errors import redis_unavailable
from careline.server.storage.redis_hotline_keys import HotlineKeys
from careline.signaling.hotline_cluster import NodeNotice

log = logging.getLogger(__name__)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(NodeNotice)
#: Pause before listening again after the subscription's connection failed.
_RETRY_SECONDS = 0.5


class RedisHotlineBus:
    """NodeBus on Redis; `start` listens on this node's channel until `close`.

    Concurrency: `publish` may be called from any task; `deliver` is called on the event loop
    from the one reader task this object owns.
    """

    def __init__(self, client: aioredis.Redis, keys: HotlineKeys) -> None:
        self._client = client
        self._keys = keys
        self._pubsub: aioredis.client.PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    async def publish(self, node: str, notice: NodeNotice) -> None:
        """Send a notice to `node` (StoreUnavailable if Redis cannot be reached)."""
        async with redis_unavailable():
            await self._client.publish(self._keys.channel_of(node), _encoder.encode(notice))

    async def start(self, node: str, deliver: Callable[[NodeNotice], None]) -> None:
        """Subscribe to `node`'s channel and hand every notice to `deliver`."""
        if self._task is not None:
            return
        pubsub = self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        async with redis_unavailable():
            await pubsub.subscribe(self._keys.channel_of(node))
        self._task = asyncio.get_running_loop().create_task(
            self._read(pubsub, deliver), name="careline-hotline-bus"
        )

    async def close(self) -> None:
        """Stop listening and release the subscription's connection; safe twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(redis_exceptions.RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(
        self, pubsub: aioredis.client.PubSub, deliver: Callable[[NodeNotice], None]
    ) -> None:
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError, OSError):
                log.warning("hotline node bus lost its Redis connection; listening again")
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                notice = _decoder.decode(message["data"])
            except msgspec.DecodeError:
                log.warning("hotline node bus: an undecodable notice was dropped")
                continue
            deliver(notice)
