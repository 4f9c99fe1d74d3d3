"""RoomBus on Redis pub/sub: one channel every node listens to, one pipelined PUBLISH per push.

`publish` never waits: pushes go to a bounded queue that one writer task drains into pipelines
(a burst of messages leaves in one round trip). A full queue or a lost connection drops pushes
(counted in `dropped`): they are hints, and clients resync from the store. Each node listens on
the channel (a RedisSubscription, which subscribes again after Redis comes back) and ignores
its own pushes. While Redis is away the writer drops what it cannot send and logs the outage once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import msgspec
import redis.asyncio as aioredis

from careline.server.storage.redis_cluster_keys import ClusterKeys
from careline.server.storage.redis_errors import redis_unavailable
from careline.server.storage.redis_subscription import RedisSubscription
from careline.signaling.errors import StoreUnavailable
from careline.signaling.outage_log import OutageLog
from careline.signaling.room_relay import RoomPush

log = logging.getLogger(__name__)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(RoomPush)
#: Pushes waiting for the writer; beyond this they are dropped.
MAX_QUEUED = 4096
#: Pushes per pipeline at most.
MAX_BATCH = 256


class RedisRoomBus:
    """Relays room pushes between nodes; `start` runs the writer and reader until `close`."""

    def __init__(self, client: aioredis.Redis, keys: ClusterKeys) -> None:
        self._client = client
        self._channel = keys.rooms_channel
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)
        self._subscription = RedisSubscription(client, self._channel, "room relay")
        self._outage = OutageLog(log, "room relay publishing")
        self._writer: asyncio.Task[None] | None = None
        self.dropped = 0
        self.relayed = 0
        self.received = 0

    def publish(self, push: RoomPush) -> None:
        """Queue `push` for every other node; dropped (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(_encoder.encode(push))
        except asyncio.QueueFull:
            self.dropped += 1

    @property
    def listening(self) -> bool:
        """Whether the subscription is up (False while Redis is away)."""
        return self._subscription.connected

    async def start(self, deliver: Callable[[RoomPush], Awaitable[None]]) -> None:
        """Subscribe to the channel and start the writer; every push read goes to `deliver`."""
        if self._writer is not None:
            return

        async def received(data: bytes) -> None:
            try:
                push = _decoder.decode(data)
            except msgspec.DecodeError:
                log.warning("room relay: an undecodable push was dropped")
                return
            self.received += 1
            try:
                await deliver(push)
            except ConnectionError:
                log.info("relayed push of %s lost a connection", push.event)

        await self._subscription.start(received)
        self._writer = asyncio.get_running_loop().create_task(
            self._write(), name="careline-room-bus-writer"
        )

    async def close(self) -> None:
        """Stop both tasks and release the subscription; queued pushes are dropped. Safe twice."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        await self._subscription.close()

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
            except StoreUnavailable as exc:
                self.dropped += len(batch)
                self._outage.failed(exc.code)
            else:
                self.relayed += len(batch)
                self._outage.ok()
