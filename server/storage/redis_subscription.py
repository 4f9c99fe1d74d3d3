"""A Redis pub/sub subscription that outlives Redis going away and coming back.

redis-py's PubSub reconnects by itself only in some cases, and a stopped (SIGSTOP) or
partitioned Redis leaves a subscriber waiting forever on a silent socket. Here one task owns
the subscription: it listens with a bounded wait, pings the server when the channel has been
quiet for `idle_seconds` and takes a missing answer as a lost connection; on any connection
failure it drops the PubSub, waits (exponential backoff up to `MAX_RETRY_SECONDS`) and
subscribes again on a fresh connection. Messages published while it was away are lost (pub/sub
delivers only to current subscribers); callers treat them as hints. One log line when the
subscription is lost, one when it is back (OutageLog), none per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions

from careline.server.storage.redis_errors import redis_unavailable
from careline.signaling.outage_log import OutageLog

log = logging.getLogger(__name__)

#: First pause before subscribing again after a failure; doubled up to MAX_RETRY_SECONDS.
RETRY_SECONDS = 0.25
MAX_RETRY_SECONDS = 2.0
#: A channel quiet this long gets a PING; no answer within as long again: the connection is lost.
IDLE_SECONDS = 2.0

_LOST = (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError, OSError)


class _Silent(Exception):
    """The server did not answer a PING on the subscription's connection."""


class RedisSubscription:
    """Listens on one channel until `close`, handing each message's bytes to `deliver`.

    Concurrency: one task owned by this object calls `deliver` on the event loop, one message
    at a time. `connected` is read by anyone (metrics, tests).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        channel: str,
        label: str,
        *,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self._client = client
        self._channel = channel
        self._idle = idle_seconds
        self._outage = OutageLog(log, f"{label} subscription")
        self._pubsub: aioredis.client.PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.resubscribed = 0

    async def start(self, deliver: Callable[[bytes], Awaitable[None]]) -> None:
        """Subscribe now (StoreUnavailable if Redis is not answering), then listen in a task."""
        if self._task is not None:
            return
        async with redis_unavailable():
            pubsub = await self._subscribe()
        self._task = asyncio.get_running_loop().create_task(
            self._run(pubsub, deliver), name=f"careline-subscription-{self._channel}"
        )

    async def close(self) -> None:
        """Stop listening and release the connection; safe twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()

    async def _subscribe(self) -> aioredis.client.PubSub:
        await self._drop()
        pubsub = self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        self.connected = True
        return pubsub

    async def _drop(self) -> None:
        self.connected = False
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            # typed in some redis-py releases, not in others: call it through a typed name
            close: Callable[[], Awaitable[None]] = pubsub.aclose
            with contextlib.suppress(redis_exceptions.RedisError, OSError):
                await close()

    async def _run(
        self, pubsub: aioredis.client.PubSub | None, deliver: Callable[[bytes], Awaitable[None]]
    ) -> None:
        pause = RETRY_SECONDS
        while True:
            try:
                if pubsub is None:
                    pubsub = await self._subscribe()
                    self.resubscribed += 1
                    self._outage.ok()
                    pause = RETRY_SECONDS
                await self._listen(pubsub, deliver)
            except (*_LOST, _Silent) as exc:
                reason = "no answer to PING" if isinstance(exc, _Silent) else type(exc).__name__
                self._outage.failed(reason)
                await self._drop()
                pubsub = None
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_RETRY_SECONDS)

    async def _listen(
        self, pubsub: aioredis.client.PubSub, deliver: Callable[[bytes], Awaitable[None]]
    ) -> None:
        heard = time.monotonic()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self._idle / 2)
            now = time.monotonic()
            if message is not None:
                heard, pinged = now, False
                if message.get("type") == "message" and isinstance(message["data"], bytes):
                    await deliver(message["data"])
                continue
            if now - heard < self._idle:
                continue
            if pinged:
                raise _Silent()
            await pubsub.ping()
            pinged = True
            heard = now
