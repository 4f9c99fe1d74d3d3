"""AuditStore on Redis: a stream per scope whose entry ids are `seq-1`, seq from INCR in Lua."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import redis.asyncio as aioredis

from careline.server.storage.redis_errors import redis_unavailable
from careline.signaling.stores import AuditEvent, AuditValue

# KEYS[1] counter, KEYS[2] stream; ARGV[1] packed event. Atomic: seq and entry appear together.
_APPEND = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], seq .. '-1', 'e', ARGV[1])
return seq
"""


class RedisAuditStore:
    """Append-only audit trail per scope; Lua makes seq assignment and append one step."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._append = client.register_script(_APPEND)

    def _keys(self, scope: str) -> tuple[str, str]:
        base = f"{self._prefix}:audit:{{{scope}}}"
        return f"{base}:seq", f"{base}:events"

    async def append(
        self, scope: str, actor: str, action: str, detail: Mapping[str, AuditValue], at: float
    ) -> AuditEvent:
        """Store an event and return it with its seq."""
        packed = msgpack.packb({"at": at, "actor": actor, "action": action, "detail": dict(detail)})
        async with redis_unavailable():
            seq = int(await self._append(keys=list(self._keys(scope)), args=[packed]))
        return AuditEvent(scope=scope, seq=seq, at=at, actor=actor, action=action, detail=detail)

    async def list(self, scope: str, after_seq: int = 0, limit: int = 100) -> Sequence[AuditEvent]:
        """Events with seq > after_seq, oldest first."""
        _, stream = self._keys(scope)
        async with redis_unavailable():
            entries = await self._client.xrange(
                stream, min=f"{after_seq + 1}-0", max="+", count=limit
            )
        events = []
        for entry_id, fields in entries or []:
            assert isinstance(entry_id, bytes)
            assert fields is not None
            body: dict[str, Any] = msgpack.unpackb(fields[b"e"])
            events.append(
                AuditEvent(
                    scope=scope,
                    seq=int(entry_id.split(b"-", 1)[0]),
                    at=float(body["at"]),
                    actor=str(body["actor"]),
                    action=str(body["action"]),
                    detail=body["detail"],
                )
            )
        return events
