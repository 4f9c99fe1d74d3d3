"""VisitStore on Redis: a hash per visit and a hash of its participants; Lua for atomic writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from careline.server.storage.redis_errors import redis_unavailable
from careline.signaling.errors import Conflict, NotFound
from careline.signaling.visit import (
    Participant,
    ParticipantKind,
    ParticipantState,
    Visit,
    VisitState,
)

# KEYS[1] visit hash, KEYS[2] participants hash; ARGV[1] version, ARGV[2] packed visit,
# ARGV[3..] participant id, packed participant pairs.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('EXISTS') end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'data', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""
# KEYS[1] visit hash; ARGV[1] expected version, ARGV[2] new version, ARGV[3] packed visit.
_UPDATE = """
local current = redis.call('HGET', KEYS[1], 'version')
if not current then return redis.error_reply('MISSING') end
if current ~= ARGV[1] then return redis.error_reply('STALE') end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'data', ARGV[3])
return 1
"""
# KEYS[1] visit hash, KEYS[2] participants hash; ARGV[1] participant id, ARGV[2] packed state
# without position; the position is kept, or appended for a new participant.
_UPSERT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('MISSING') end
local old = redis.call('HGET', KEYS[2], ARGV[1])
local position
if old then position = cmsgpack.unpack(old)[1] else position = redis.call('HLEN', KEYS[2]) end
local fields = cmsgpack.unpack(ARGV[2])
fields[1] = position
redis.call('HSET', KEYS[2], ARGV[1], cmsgpack.pack(fields))
return 1
"""


class RedisVisitStore:
    """Visits on Redis; versioned updates are compare-and-set in Lua, so nodes cannot both win."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._create = client.register_script(_CREATE)
        self._update = client.register_script(_UPDATE)
        self._upsert = client.register_script(_UPSERT)

    def _keys(self, visit_id: str) -> list[str]:
        base = f"{self._prefix}:visit:{{{visit_id}}}"
        return [base, f"{base}:participants"]

    async def create(self, visit: Visit, participants: Sequence[Participant]) -> None:
        """Store the visit and its invitees atomically."""
        args: list[Any] = [visit.version, _pack_visit(visit)]
        for position, participant in enumerate(participants):
            args += [participant.participant_id, _pack_participant(participant, position)]
        async with redis_unavailable():
            try:
                await self._create(keys=self._keys(visit.visit_id), args=args)
            except ResponseError as exc:
                if "EXISTS" in str(exc):
                    raise Conflict("a visit with this id exists") from None
                raise

    async def get(self, visit_id: str) -> Visit | None:
        """The visit, or None."""
        async with redis_unavailable():
            data = await self._client.hget(self._keys(visit_id)[0], "data")
        if data is None:
            return None
        assert isinstance(data, bytes)
        return _unpack_visit(data)

    async def participants(self, visit_id: str) -> Sequence[Participant]:
        """Participants in invitation order."""
        async with redis_unavailable():
            values = await self._client.hvals(self._keys(visit_id)[1])
        unpacked = sorted((msgpack.unpackb(v) for v in values), key=lambda f: f[0])
        return [_participant(visit_id, fields) for fields in unpacked]

    async def update_visit(self, visit: Visit, expected_version: int) -> Visit:
        """Compare-and-set on version."""
        async with redis_unavailable():
            try:
                await self._update(
                    keys=self._keys(visit.visit_id)[:1],
                    args=[expected_version, visit.version, _pack_visit(visit)],
                )
            except ResponseError as exc:
                if "MISSING" in str(exc):
                    raise NotFound("no such visit") from None
                if "STALE" in str(exc):
                    raise Conflict("the visit changed meanwhile", code="visit.stale") from None
                raise
        return visit

    async def upsert_participant(self, participant: Participant) -> None:
        """Store a participant's state."""
        async with redis_unavailable():
            try:
                await self._upsert(
                    keys=self._keys(participant.visit_id),
                    args=[participant.participant_id, _pack_participant(participant, 0)],
                )
            except ResponseError as exc:
                if "MISSING" in str(exc):
                    raise NotFound("no such visit") from None
                raise


def _pack_visit(visit: Visit) -> bytes:
    return bytes(
        msgpack.packb(
            [
                visit.visit_id,
                visit.state.value,
                visit.codec,
                visit.created_by,
                visit.created_at,
                visit.ended_at,
                visit.version,
            ]
        )
    )


def _unpack_visit(data: bytes) -> Visit:
    visit_id, state, codec, created_by, created_at, ended_at, version = msgpack.unpackb(data)
    return Visit(
        visit_id=visit_id,
        state=VisitState(state),
        codec=codec,
        created_by=created_by,
        created_at=float(created_at),
        ended_at=None if ended_at is None else float(ended_at),
        version=int(version),
    )


def _pack_participant(p: Participant, position: int) -> bytes:
    return bytes(
        msgpack.packb(
            [
                position,
                p.participant_id,
                p.sub,
                p.kind.value,
                p.state.value,
                p.updated_at,
                p.grace_until,
            ]
        )
    )


def _participant(visit_id: str, fields: list[Any]) -> Participant:
    _, participant_id, sub, kind, state, updated_at, grace_until = fields
    return Participant(
        visit_id=visit_id,
        participant_id=participant_id,
        sub=sub,
        kind=ParticipantKind(kind),
        state=ParticipantState(state),
        updated_at=float(updated_at),
        grace_until=None if grace_until is None else float(grace_until),
    )
