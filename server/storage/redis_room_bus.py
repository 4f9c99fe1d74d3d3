"""RoomBus on Redis pub/sub: one channel every node listens to, one pipelined PUBLISH per push.

`publish` never waits: pushes go to a bounded queue that one writer task drains into pipelines
(a burst of messages leaves in one round trip). A full queue or a lost connection drops pushes
(counted in `dropped`): they are hints, and clients resync from the store. Each node listens on
the channel with one reader task and ignores its own pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import msgspec
import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions

from careline.server.storage.redis_cluster_keys import ClusterKeys
from careline.server.storage.redis_errors import redis_unavailable
from careline.signaling.errors import StoreUnavailable
from careline.signaling.room_relay import RoomPush

log = logging.getLogger(__name__)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(RoomPush)
#: Pushes waiting for the writer; beyond this they are dropped.
MAX_QUEUED = 4096
#: Pushes per pipeline at most.
MAX_BATCH = 256
#: Pause before listening again after the subscription's connection failed.
_RETRY_SECONDS = 0.5

_EXPECTED = (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError, OSError)


class RedisRoomBus:
    """Relays room pushes between nodes; `start` runs the writer and reader until `close`."""

    def __init__(self, client: aioredis.Redis, keys: ClusterKeys) -> None:
        self._client = client
        self._channel = keys.rooms_channel
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)
        self._pubsub: aioredis.client.PubSub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0
        self.relayed = 0
        self.received = 0

    def publish(self, push: RoomPush) -> None:
        """Queue `push` for every other node; dropped (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(_encoder.encode(push))
        except asyncio.QueueFull:
            self.dropped += 1

    async def start(self, deliver: Callable[[RoomPush], Awaitable[None]]) -> None:
        """Subscribe to the channel and start the writer; every push read goes to `deliver`."""
        if self._tasks:
            return
        pubsub = self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        async with redis_unavailable():
            await pubsub.subscribe(self._channel)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write(), name="careline-room-bus-writer"),
            loop.create_task(self._read(pubsub, deliver), name="careline-room-bus-reader"),
        ]

    async def close(self) -> None:
        """Stop both tasks and release the subscription; queued pushes are dropped. Safe twice."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(redis_exceptions.RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _write(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            pipe = self._client.pipeline(transaction=False)
            for encoded in batch:
                pipe.publish(self._channel, encoded)
            try:
                async with redis_unavailable():
                    await pipe.execute()
            except StoreUnavailable:
                self.dropped += len(batch)
                log.warning("room relay: %d pushes dropped, Redis is not answering", len(batch))
            else:
                self.relayed += len(batch)

    async def _read(
        self, pubsub: aioredis.client.PubSub, deliver: Callable[[RoomPush], Awaitable[None]]
    ) -> None:
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except _EXPECTED:
                log.warning("room relay lost its Redis connection; listening again")
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                push = _decoder.decode(message["data"])
            except msgspec.DecodeError:
                log.warning("room relay: an undecodable push was dropped")
                continue
            self.received += 1
            try:
                await deliver(push)
            except ConnectionError:
                log.info("relayed push of %s lost a connection", push.event)
