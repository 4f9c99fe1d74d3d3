"""RevocationStore on Redis: one key per revocation, expiring on its own (EXAT)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import redis.asyncio as aioredis

from careline.server.storage.redis_errors import redis_unavailable

# KEYS[1] the revocation key; ARGV[1] until (unix seconds, float). A later `until` wins.
_REVOKE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local until_ = tonumber(ARGV[1])
if until_ > current then
  redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
end
return 1
"""


class RedisRevocationStore:
    """Revoked keys that Redis expires when the credential they block would have expired."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._revoke = client.register_script(_REVOKE)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:revoked:{key}"

    async def revoke(self, key: str, until: float) -> None:
        """Revoke `key` until `until`."""
        async with redis_unavailable():
            await self._revoke(keys=[self._key(key)], args=[repr(until), math.ceil(until) + 1])

    async def is_revoked(self, keys: Sequence[str], now: float) -> bool:
        """True if any key is revoked at `now`."""
        if not keys:
            return False
        async with redis_unavailable():
            values = await self._client.mget([self._key(k) for k in keys])
        return any(v is not None and float(v) > now for v in values)
