"""The Redis backend: every store on one Redis (the scale-out backend)."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from careline.server.storage.redis_audit import RedisAuditStore
from careline.server.storage.redis_errors import redis_unavailable
from careline.server.storage.redis_revocations import RedisRevocationStore
from careline.server.storage.redis_visits import RedisVisitStore


class RedisStorage:
    """Storage on Redis. Commands retry transient connection errors with capped backoff."""

    backend = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
        )
        self._audit = RedisAuditStore(self._client, prefix)
        self._revocations = RedisRevocationStore(self._client, prefix)
        self._visits = RedisVisitStore(self._client, prefix)
        self._closed = False

    @property
    def client(self) -> aioredis.Redis:
        """The shared client (for stores added by later steps)."""
        return self._client

    @property
    def audit(self) -> RedisAuditStore:
        return self._audit

    @property
    def revocations(self) -> RedisRevocationStore:
        return self._revocations

    @property
    def visits(self) -> RedisVisitStore:
        return self._visits

    async def open(self) -> None:
        """Check that Redis answers; raises StoreUnavailable otherwise."""
        await self.ping()

    async def ping(self) -> None:
        async with redis_unavailable():
            await self._client.ping()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
