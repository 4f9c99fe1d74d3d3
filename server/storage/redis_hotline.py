"""HotlineStore on Redis: the queue and presence shared by every node, changed only by Lua.

`apply` is one Lua script: it checks the version of every call and presence in the change (and
that a kiosk has no other open call) and only then writes them all, so two nodes offering the
same call or the same pharmacist cannot both succeed; the loser gets `hotline.stale` and routes
again. Every key shares the hash tag `{hotline}` (one slot); like the thread store, the hotline
needs a single Redis (with replicas), not Redis Cluster across slots of other stores.

Keys under `<prefix>:{hotline}:` (redis_hotline_keys.py): `calls` (id -> record),
`call_versions`, `open` (ids of queued, ringing and connected calls), `kiosk_open` (kiosk -> its
open call), `by_time` (ids by enqueue time), `presence` (sub -> record), `presence_versions`,
`kiosks`, `kiosk_versions`, `skills`, `nodes` (node -> lease end), and the routing indexes kept
by the same scripts: `queue` and `queue_requeued` (queued call ids by enqueue time; re-queued
calls come first) and `available` (available pharmacists by idle-since). `reindex` rebuilds the
indexes from the records (at open: data written before they existed, or any drift).
Global dispatch over these indexes is redis_hotline_dispatch.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from careline.server.storage.hotline_codec import (
    pack,
    unpack_call,
    unpack_kiosk,
    unpack_presence,
    unpack_skills,
)
from careline.server.storage.redis_errors import redis_unavailable
from careline.server.storage.redis_hotline_keys import HotlineKeys
from careline.signaling.errors import Conflict
from careline.signaling.hotline_call import Call, CallState
from careline.signaling.hotline_store import HotlineChange
from careline.signaling.kiosk import Kiosk
from careline.signaling.presence import Presence, PresenceState

# KEYS: calls, call_versions, open, kiosk_open, by_time, presence, presence_versions, queue,
#       queue_requeued, available.
# ARGV: n, then per call: id, version, kiosk, open (1/0), enqueued_at, data,
#       queued (0: no, 1: queued, 2: queued after a re-queue);
#       m, then per presence: sub, version, data, idle-since if available (else "").
_APPLY = """
local function stale(current, version)
  if version == 1 then return current ~= false end
  return (not current) or tonumber(current) ~= version - 1
end
local n = tonumber(ARGV[1])
local i = 2
for _ = 1, n do
  local id, version, kiosk, open = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  if stale(redis.call('HGET', KEYS[2], id), version) then return redis.error_reply('STALE') end
  if open == '1' then
    local holder = redis.call('HGET', KEYS[4], kiosk)
    if holder and holder ~= id then return redis.error_reply('BUSY') end
  end
  i = i + 7
end
local m = tonumber(ARGV[i])
local j = i + 1
for _ = 1, m do
  if stale(redis.call('HGET', KEYS[7], ARGV[j]), tonumber(ARGV[j + 1])) then
    return redis.error_reply('STALE')
  end
  j = j + 4
end
i = 2
for _ = 1, n do
  local id, version, kiosk, open = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  redis.call('HSET', KEYS[1], id, ARGV[i + 5])
  redis.call('HSET', KEYS[2], id, version)
  redis.call('ZADD', KEYS[5], ARGV[i + 4], id)
  if open == '1' then
    redis.call('SADD', KEYS[3], id)
    redis.call('HSET', KEYS[4], kiosk, id)
  else
    redis.call('SREM', KEYS[3], id)
    if redis.call('HGET', KEYS[4], kiosk) == id then redis.call('HDEL', KEYS[4], kiosk) end
  end
  redis.call('ZREM', KEYS[8], id)
  redis.call('ZREM', KEYS[9], id)
  if ARGV[i + 6] == '1' then redis.call('ZADD', KEYS[8], ARGV[i + 4], id)
  elseif ARGV[i + 6] == '2' then redis.call('ZADD', KEYS[9], ARGV[i + 4], id) end
  i = i + 7
end
j = i + 1
for _ = 1, m do
  redis.call('HSET', KEYS[6], ARGV[j], ARGV[j + 2])
  redis.call('HSET', KEYS[7], ARGV[j], ARGV[j + 1])
  if ARGV[j + 3] == '' then redis.call('ZREM', KEYS[10], ARGV[j])
  else redis.call('ZADD', KEYS[10], ARGV[j + 3], ARGV[j]) end
  j = j + 4
end
return 1
"""
# KEYS: open, calls. The records of every open call, read atomically.
_OPEN_CALLS = """
local ids = redis.call('SMEMBERS', KEYS[1])
local found = {}
for start = 1, #ids, 1000 do
  local chunk = {}
  for k = start, math.min(start + 999, #ids) do chunk[#chunk + 1] = ids[k] end
  local values = redis.call('HMGET', KEYS[2], unpack(chunk))
  for _, value in ipairs(values) do if value then found[#found + 1] = value end end
end
return found
"""
# KEYS: kiosks, kiosk_versions; ARGV: id, version, data. Compare-and-set on the version.
_UPDATE_KIOSK = """
local current = redis.call('HGET', KEYS[2], ARGV[1])
if (not current) or tonumber(current) ~= tonumber(ARGV[2]) - 1 then
  return redis.error_reply('STALE')
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
# KEYS: open, calls, presence, queue, queue_requeued, available. Scores are written with 17
# significant digits (a Lua number given to redis.call keeps only 14).
_REINDEX = """
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then
    local call = cmsgpack.unpack(raw)
    if call.state == 'queued' then
      local queue = KEYS[4]
      if call.requeued then queue = KEYS[5] end
      redis.call('ZADD', queue, string.format('%.17g', call.enqueued_at), id)
    end
  end
end
local all = redis.call('HGETALL', KEYS[3])
for k = 1, #all, 2 do
  local presence = cmsgpack.unpack(all[k + 1])
  if presence.state == 'available' then
    redis.call('ZADD', KEYS[6], string.format('%.17g', presence.idle_since), all[k])
  end
end
return 1
"""
# KEYS: kiosks, kiosk_versions; ARGV: id, version, data. Insert if absent.
_ADD_KIOSK = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return redis.error_reply('EXISTS') end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""


class RedisHotlineStore:
    """The hotline on Redis; every change of calls and presence is one Lua compare-and-set."""

    def __init__(self, client: aioredis.Redis, keys: HotlineKeys) -> None:
        self._client = client
        self._keys = keys
        self._calls = keys.calls
        self._call_versions = keys.call_versions
        self._open = keys.open
        self._kiosk_open = keys.kiosk_open
        self._by_time = keys.by_time
        self._presence = keys.presence
        self._presence_versions = keys.presence_versions
        self._kiosks = keys.kiosks
        self._kiosk_versions = keys.kiosk_versions
        self._skills = keys.skills
        self._nodes = keys.nodes
        self._reindex = client.register_script(_REINDEX)
        self._apply = client.register_script(_APPLY)
        self._open_calls = client.register_script(_OPEN_CALLS)
        self._add_kiosk = client.register_script(_ADD_KIOSK)
        self._update_kiosk = client.register_script(_UPDATE_KIOSK)

    # -- kiosks and skills -------------------------------------------------------------------

    async def add_kiosk(self, kiosk: Kiosk) -> None:
        """Register a kiosk (Conflict if the id is taken)."""
        async with redis_unavailable():
            try:
                await self._add_kiosk(
                    keys=[self._kiosks, self._kiosk_versions],
                    args=[kiosk.kiosk_id, kiosk.version, pack(kiosk)],
                )
            except ResponseError as exc:
                if "EXISTS" in str(exc):
                    raise Conflict(
                        "a kiosk with this id exists", code="hotline.kiosk_exists"
                    ) from None
                raise

    async def get_kiosk(self, kiosk_id: str) -> Kiosk | None:
        """The kiosk, or None."""
        async with redis_unavailable():
            data = await self._client.hget(self._kiosks, kiosk_id)
        return None if data is None else unpack_kiosk(_bytes(data))

    async def update_kiosk(self, kiosk: Kiosk) -> None:
        """Compare-and-set on the kiosk's version."""
        async with redis_unavailable():
            try:
                await self._update_kiosk(
                    keys=[self._kiosks, self._kiosk_versions],
                    args=[kiosk.kiosk_id, kiosk.version, pack(kiosk)],
                )
            except ResponseError as exc:
                if "STALE" in str(exc):
                    raise Conflict("the kiosk changed meanwhile", code="hotline.stale") from None
                raise

    async def set_skills(self, sub: str, skills: Sequence[str]) -> None:
        """Replace a pharmacist's skills."""
        async with redis_unavailable():
            await self._client.hset(self._skills, sub, pack(tuple(skills)))

    async def get_skills(self, sub: str) -> tuple[str, ...]:
        """A pharmacist's skills (empty if none were set)."""
        async with redis_unavailable():
            data = await self._client.hget(self._skills, sub)
        return () if data is None else unpack_skills(_bytes(data))

    # -- calls and presence --------------------------------------------------------------------

    async def apply(self, change: HotlineChange) -> None:
        """One Lua script: check every version, then write everything (or nothing)."""
        args: list[Any] = [len(change.calls)]
        for call in change.calls:
            args += [
                call.call_id,
                call.version,
                call.kiosk_id,
                1 if call.is_open else 0,
                repr(call.enqueued_at),
                pack(call),
                _queued(call),
            ]
        args.append(len(change.presences))
        for presence in change.presences:
            idle = repr(presence.idle_since) if presence.state is PresenceState.AVAILABLE else ""
            args += [presence.sub, presence.version, pack(presence), idle]
        keys = [
            self._calls,
            self._call_versions,
            self._open,
            self._kiosk_open,
            self._by_time,
            self._presence,
            self._presence_versions,
            self._keys.queue,
            self._keys.queue_requeued,
            self._keys.available,
        ]
        async with redis_unavailable():
            try:
                await self._apply(keys=keys, args=args)
            except ResponseError as exc:
                if "STALE" in str(exc):
                    raise Conflict("the hotline changed meanwhile", code="hotline.stale") from None
                if "BUSY" in str(exc):
                    raise Conflict(
                        "this kiosk already has a call", code="hotline.already_calling"
                    ) from None
                raise

    async def get_call(self, call_id: str) -> Call | None:
        """The call, or None."""
        async with redis_unavailable():
            data = await self._client.hget(self._calls, call_id)
        return None if data is None else unpack_call(_bytes(data))

    async def open_calls(self) -> Sequence[Call]:
        """Every queued, ringing or connected call."""
        async with redis_unavailable():
            values = await self._open_calls(keys=[self._open, self._calls])
        return [unpack_call(_bytes(v)) for v in values]

    async def open_call_of(self, kiosk_id: str) -> Call | None:
        """The kiosk's open call, if any."""
        async with redis_unavailable():
            call_id = await self._client.hget(self._kiosk_open, kiosk_id)
            if call_id is None:
                return None
            data = await self._client.hget(self._calls, call_id)
        if data is None:
            return None
        call = unpack_call(_bytes(data))
        return call if call.is_open else None

    async def recent_calls(self, since: float, limit: int = 10_000) -> Sequence[Call]:
        """Calls placed at or after `since`, oldest first."""
        async with redis_unavailable():
            ids = await self._client.zrangebyscore(self._by_time, since, "+inf", start=0, num=limit)
            if not ids:
                return []
            values = await self._client.hmget(self._calls, [_bytes(i) for i in ids])
        return [unpack_call(_bytes(v)) for v in values if v is not None]

    async def get_presence(self, sub: str) -> Presence | None:
        """The pharmacist's presence, or None."""
        async with redis_unavailable():
            data = await self._client.hget(self._presence, sub)
        return None if data is None else unpack_presence(_bytes(data))

    async def presences(self) -> Sequence[Presence]:
        """Every pharmacist's presence."""
        async with redis_unavailable():
            values = await self._client.hvals(self._presence)
        return [unpack_presence(_bytes(v)) for v in values]

    async def reindex(self) -> None:
        """Rebuild the routing indexes from the records (one atomic script)."""
        keys = self._keys
        async with redis_unavailable():
            await self._reindex(
                keys=[
                    keys.open,
                    keys.calls,
                    keys.presence,
                    keys.queue,
                    keys.queue_requeued,
                    keys.available,
                ]
            )

    # -- nodes -----------------------------------------------------------------------------------

    async def heartbeat(self, node: str, until: float) -> None:
        """Extend a node's lease (and drop leases that ran out a day ago)."""
        async with redis_unavailable(), self._client.pipeline(transaction=True) as pipe:
            pipe.zadd(self._nodes, {node: until})
            pipe.zremrangebyscore(self._nodes, "-inf", until - 86_400)
            await pipe.execute()

    async def live_nodes(self, now: float) -> frozenset[str]:
        """Nodes whose lease runs past `now`."""
        async with redis_unavailable():
            nodes = await self._client.zrangebyscore(self._nodes, f"({now!r}", "+inf")
        return frozenset(_bytes(n).decode() for n in nodes)


def _queued(call: Call) -> int:
    """Where a call stands in the queue indexes: 0 not queued, 1 queued, 2 re-queued."""
    if call.state is not CallState.QUEUED:
        return 0
    return 2 if call.requeued else 1


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()
