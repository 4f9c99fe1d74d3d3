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

#: A stored participant is a msgpack array: position, then the fields of `_participant_fields`.
_PARTICIPANT_FIELDS = 7
#: The msgpack fixarray header of a stored participant.
_ARRAY_HEADER = 0x90 | _PARTICIPANT_FIELDS

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
# KEYS[1] visit hash, KEYS[2] participants hash; ARGV[1] participant id, ARGV[2] the record's
# fields after the position, each packed on its own. The position is kept, or appended for a new
# participant, and the record is assembled as bytes: unpacking it into a Lua table would lose a
# trailing nil (grace_until) and store a record one field short.
_UPSERT = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('MISSING') end
local old = redis.call('HGET', KEYS[2], ARGV[1])
local position
if old then position = cmsgpack.unpack(old)[1] else position = redis.call('HLEN', KEYS[2]) end
local record = string.char({_ARRAY_HEADER}) .. cmsgpack.pack(position) .. ARGV[2]
redis.call('HSET', KEYS[2], ARGV[1], record)
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
        if len({p.sub for p in participants}) != len(participants):
            raise Conflict("each participant of a visit needs a distinct sub")
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
                    args=[participant.participant_id, _participant_fields(participant)],
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
    return bytes([_ARRAY_HEADER]) + bytes(msgpack.packb(position)) + _participant_fields(p)


def _participant_fields(p: Participant) -> bytes:
    """The record after its position: each field packed on its own (the Lua prepends the rest)."""
    fields = (p.participant_id, p.sub, p.kind.value, p.state.value, p.updated_at, p.grace_until)
    assert len(fields) == _PARTICIPANT_FIELDS - 1
    return b"".join(bytes(msgpack.packb(f)) for f in fields)


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
