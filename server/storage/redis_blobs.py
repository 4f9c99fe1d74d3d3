"""BlobStore on Redis: one string key per blob (the Redis backend's attachment bytes)."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from careline.server.storage.redis_errors import redis_unavailable


class RedisBlobStore:
    """Blobs as Redis strings under `<prefix>:blob:<key>`; durable as the server's AOF allows."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def _key(self, key: str) -> str:
        return f"{self._prefix}:blob:{key}"

    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`."""
        async with redis_unavailable():
            await self._client.set(self._key(key), data)

    async def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None."""
        async with redis_unavailable():
            value = await self._client.get(self._key(key))
        assert value is None or isinstance(value, bytes)
        return value

    async def delete(self, keys: Sequence[str]) -> None:
        """Remove these keys."""
        if keys:
            async with redis_unavailable():
                await self._client.delete(*(self._key(k) for k in keys))
