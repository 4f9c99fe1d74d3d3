"""Calls of one Lua script from concurrent tasks, sent to Redis together in pipelines.

Each message append is one script call. Sent one by one, every call takes a pooled connection,
a write and a read of its own, and a burst of concurrent sends can need more connections than
the pool holds. Here the calls queued while a pipeline is in flight leave together in the next
one: one connection, one write and one read per batch, and the scripts run one after another in
Redis exactly as if they had been sent separately (a pipeline is not a transaction; each script is
atomic on its own). With `appendfsync always` Redis fsyncs once for the commands of an event-loop
pass before it replies, so batching does not weaken durability.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions
from redis.commands.core import AsyncScript

from careline.server.storage.redis_errors import redis_unavailable
from careline.signaling.errors import StoreUnavailable


@dataclass(slots=True)
class _Call:
    keys: Sequence[str]
    args: Sequence[Any]
    future: asyncio.Future[Any]


class ScriptBatcher:
    """Runs `script` for concurrent callers, at most one pipeline in flight at a time.

    `call()` may be called from any task of one event loop. Calls waiting for a pipeline are
    bounded by `max_pending` (callers beyond it wait for room). The sending task is started by the
    first call and ends once nothing is waiting. A caller cancelled after its call was queued does
    not undo it: the script may still run.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        script: AsyncScript,
        *,
        max_batch: int = 256,
        max_pending: int = 4096,
    ) -> None:
        self._client = client
        self._script = script
        self._max_batch = max_batch
        self._room = asyncio.Semaphore(max_pending)
        self._pending: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def call(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script with `keys` and `args` in the next pipeline; return its reply.

        Raises StoreUnavailable when Redis cannot be reached, or the script's own error.
        """
        await self._room.acquire()
        try:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Any] = loop.create_future()
            self._pending.append(_Call(keys, args, future))
            if self._sender is None:
                self._sender = loop.create_task(self._send_all(), name="careline-redis-batch")
            return await future
        finally:
            self._room.release()

    async def _send_all(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: len(batch)]
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[_Call]) -> None:
        pipe = self._client.pipeline(transaction=False)
        try:
            for call in batch:
                await self._script(keys=call.keys, args=call.args, client=pipe)
            async with redis_unavailable():
                replies = await pipe.execute(raise_on_error=False)
        except (StoreUnavailable, redis_exceptions.RedisError) as exc:
            for call in batch:
                _settle(call.future, None, exc)
            return
        except BaseException:
            failure = StoreUnavailable("the Redis pipeline was interrupted")
            for call in batch:
                _settle(call.future, None, failure)
            raise
        for call, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                _settle(call.future, None, reply)
            else:
                _settle(call.future, reply, None)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the script ran (or not) regardless
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
