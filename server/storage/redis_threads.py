"""ThreadStore on Redis: a sorted set per thread, idempotency keys, Lua for every write.

Seqs are gap-free because the append script reads `last_seq`, checks every rule and writes the
entry, the idempotency key and the thread in one atomic step; it replies with the thread as it
left it. Concurrent appends share pipelines (redis_thread_batcher). See redis_thread_scripts for
the key layout. Durability depends on the server's AOF settings (docs/configuration.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
import msgspec
import redis.asyncio as aioredis

from careline.server.storage import redis_thread_scripts as lua
from careline.server.storage.redis_errors import redis_unavailable
from careline.server.storage.redis_thread_batcher import ScriptBatcher
from careline.server.storage.reply_text import decoded
from careline.server.storage.thread_codec import (
    THREAD_FIELDS,
    message_from_map,
    message_map,
    thread_from_values,
)
from careline.signaling.errors import NotFound
from careline.signaling.thread import (
    Appended,
    Attachment,
    Change,
    Message,
    MessageDraft,
    PurgeResult,
    Refusal,
    Thread,
    ThreadQuery,
    ThreadState,
    ThreadSummary,
    attachment_refusal,
    blob_key,
    duplicate_mismatch,
    refusal,
    seq_out_of_range,
    stored_message,
    target_refusal,
)

_BATCH = 200


class RedisThreadStore:
    """Threads on Redis. Every write is one Lua script; reads are plain commands."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._create = client.register_script(lua.CREATE)
        self._appends = ScriptBatcher(client, client.register_script(lua.APPEND))
        self._mark_read = client.register_script(lua.MARK_READ)
        self._add_attachment = client.register_script(lua.ADD_ATTACHMENT)
        self._purge_thread = client.register_script(lua.PURGE_THREAD)
        self._purge_unsent = client.register_script(lua.PURGE_UNSENT)

    def _key(self, thread_id: str, part: str = "") -> str:
        base = f"{self._prefix}:thread:{{{thread_id}}}"
        return f"{base}:{part}" if part else base

    def _keys(self, thread_id: str) -> list[str]:
        return [self._key(thread_id)] + [
            self._key(thread_id, part) for part in ("msgs", "ids", "reads", "atts")
        ]

    async def create(self, thread: Thread, opened: MessageDraft) -> tuple[Thread, bool]:
        """Store the thread with its first entry, or return the existing one."""
        first = stored_message(opened, 1, ())
        packed_thread = msgpack.packb(
            {
                "thread_id": thread.thread_id,
                "family_sub": thread.family_sub,
                "patient_ref": thread.patient_ref,
                "state": thread.state.value,
                "created_by": thread.created_by,
                "created_at_s": repr(thread.created_at),
                "version": thread.version,
                "cmid": opened.client_msg_id,
                "opener": opened.sender,
            }
        )
        async with redis_unavailable():
            reply = await self._create(
                keys=self._keys(thread.thread_id)[:4],
                args=[
                    self._prefix,
                    packed_thread,
                    msgpack.packb(message_map(first)),
                    first.fingerprint,
                ],
            )
        if reply == 1:
            return msgspec.structs.replace(thread, last_seq=1), True
        family, patient = (decoded(v) for v in reply)
        if (family, patient) != (thread.family_sub, thread.patient_ref):
            raise duplicate_mismatch()
        existing = await self.get(thread.thread_id)
        assert existing is not None
        return existing, False

    async def get(self, thread_id: str) -> Thread | None:
        """The thread, or None."""
        async with redis_unavailable():
            values = await self._client.hmget(self._key(thread_id), list(THREAD_FIELDS))
        if values[0] is None:
            return None
        return thread_from_values(values)

    async def list_threads(self, query: ThreadQuery) -> Sequence[ThreadSummary]:
        """Threads matching the query from the indexes, newest activity first.

        Each index is read newest first in chunks; reading stops once `limit` matches are found
        that are all newer than anything an index could still yield.
        """
        if query.only is not None:
            summaries = await self._summaries([query.only], query.viewer)
            return [s for s in summaries if _matches(s.thread, query)]
        base = f"{self._prefix}:threads"
        if query.family is not None:
            indexes = [f"{base}:family:{query.family}"]
        elif query.clinician is not None:
            indexes = [f"{base}:open", f"{base}:assigned:{query.clinician}"]
        else:
            indexes = [f"{base}:all"]
        top = "+inf" if query.before is None else f"({query.before!r}"
        chunk = max(query.limit, 50)
        offsets = dict.fromkeys(indexes, 0)
        frontier: dict[str, float] = {}
        found: list[ThreadSummary] = []
        seen: set[str] = set()
        while offsets:
            fresh: list[str] = []
            for index in list(offsets):
                async with redis_unavailable():
                    rows = await self._client.zrevrangebyscore(
                        index, top, "-inf", start=offsets[index], num=chunk, withscores=True
                    )
                offsets[index] += chunk
                if len(rows) < chunk:
                    del offsets[index]
                    frontier.pop(index, None)
                else:
                    frontier[index] = float(rows[-1][1])
                for row in rows:
                    tid = decoded(row[0])
                    if tid not in seen:
                        seen.add(tid)
                        fresh.append(tid)
            summaries = await self._summaries(fresh, query.viewer)
            found += [s for s in summaries if _matches(s.thread, query)]
            found.sort(key=lambda s: (s.thread.updated_at, s.thread.thread_id), reverse=True)
            if len(found) >= query.limit and (
                not frontier or found[query.limit - 1].thread.updated_at > max(frontier.values())
            ):
                break
        return found[: query.limit]

    async def _summaries(self, thread_ids: list[str], viewer: str) -> list[ThreadSummary]:
        if not thread_ids:
            return []
        async with redis_unavailable(), self._client.pipeline(transaction=False) as pipe:
            for tid in thread_ids:
                pipe.hmget(self._key(tid), list(THREAD_FIELDS))
                pipe.hget(self._key(tid, "reads"), viewer)
            replies = await pipe.execute()
        summaries = []
        for values, read in zip(replies[::2], replies[1::2], strict=True):
            if values[0] is not None:
                summaries.append(ThreadSummary(thread_from_values(values), int(read or 0)))
        return summaries

    async def append(self, draft: MessageDraft, change: Change) -> Appended:
        """Run the append script and turn its reply into the entry or the domain's error."""
        request: dict[str, Any] = {
            "cmid": draft.client_msg_id,
            "fp": draft.fingerprint,
            "sender": draft.sender,
            "role": draft.sender_role.value,
            "kind": draft.kind.value,
            "at": draft.created_at,
            "at_s": repr(draft.created_at),
            "att_ids": list(draft.attachment_ids),
            "allowed": [s.value for s in change.allowed],
            "moves": {before.value: after.value for before, after in change.moves},
        }
        optional = {
            "text": draft.text,
            "event": None if draft.event is None else draft.event.value,
            "subject": draft.subject,
            "target": draft.target_seq,
            "family": change.family,
            "assignee": change.assignee,
            "version": change.expected_version,
            "assign_to": change.assign_to,
        }
        request.update({k: v for k, v in optional.items() if v is not None})
        reply = await self._appends.call(
            self._keys(draft.thread_id), [self._prefix, msgpack.packb(request)]
        )
        status = decoded(reply[0])
        if status == "ERR":
            raise self._refused(draft, decoded(reply[1]), decoded(reply[2]), reply[3])
        if status == "DUP":
            thread = await self.get(draft.thread_id)
            assert thread is not None
            [original] = await self.get_messages(draft.thread_id, [int(reply[1])])
            target = None
            if original.target_seq is not None:
                targets = await self.get_messages(draft.thread_id, [original.target_seq])
                target = targets[0] if targets else None
            return Appended(original, thread, duplicate=True, target=target)
        message = message_from_map(draft.thread_id, msgpack.unpackb(reply[2]))
        revised = (
            None if not reply[3] else message_from_map(draft.thread_id, msgpack.unpackb(reply[3]))
        )
        dropped = tuple(blob_key(draft.thread_id, decoded(aid)) for aid in reply[4] or [])
        thread = thread_from_values(reply[5])
        return Appended(message, thread, duplicate=False, target=revised, dropped_blobs=dropped)

    def _refused(self, draft: MessageDraft, reason: str, state: str, detail: Any) -> Exception:
        if reason == "MISMATCH":
            return duplicate_mismatch()
        if reason == "ATTACHMENT":
            found = None if not detail else _attachment(draft.thread_id, detail)
            problem = attachment_refusal(found, draft)
            assert problem is not None
            return problem
        if reason == "TARGET":
            target = None
            if detail:
                target = message_from_map(draft.thread_id, msgpack.unpackb(detail))
            problem = target_refusal(target, draft)
            assert problem is not None, "the append script refused a target the domain accepts"
            return problem
        return refusal(Refusal(reason), ThreadState(state) if state else None)

    async def messages(
        self, thread_id: str, *, after_seq: int = 0, before_seq: int | None = None, limit: int = 100
    ) -> Sequence[Message]:
        """Entries oldest first, after `after_seq` or the last `limit` before `before_seq`."""
        key = self._key(thread_id, "msgs")
        async with redis_unavailable():
            if before_seq is not None:
                rows = await self._client.zrevrangebyscore(
                    key, f"({before_seq}", "-inf", start=0, num=limit
                )
                rows.reverse()
            else:
                rows = await self._client.zrangebyscore(
                    key, f"({after_seq}", "+inf", start=0, num=limit
                )
        return [message_from_map(thread_id, msgpack.unpackb(row)) for row in rows]

    async def get_messages(self, thread_id: str, seqs: Sequence[int]) -> Sequence[Message]:
        """The entries with these seqs, in seq order."""
        wanted = sorted(set(seqs))
        if not wanted:
            return []
        key = self._key(thread_id, "msgs")
        async with redis_unavailable(), self._client.pipeline(transaction=False) as pipe:
            for seq in wanted:
                pipe.zrangebyscore(key, seq, seq)
            replies = await pipe.execute()
        return [message_from_map(thread_id, msgpack.unpackb(rows[0])) for rows in replies if rows]

    async def mark_read(self, thread_id: str, sub: str, seq: int) -> int:
        """Raise the read horizon (monotonic) and return it."""
        async with redis_unavailable():
            reply = await self._mark_read(
                keys=[self._key(thread_id), self._key(thread_id, "reads")], args=[sub, seq]
            )
        if isinstance(reply, list):
            if decoded(reply[0]) == "NO_THREAD":
                raise NotFound("no such thread", code="thread.not_found")
            raise seq_out_of_range(seq, int(reply[1]))
        return int(reply)

    async def read_seq(self, thread_id: str, sub: str) -> int:
        """The read horizon, 0 if none."""
        async with redis_unavailable():
            value = await self._client.hget(self._key(thread_id, "reads"), sub)
        return int(value or 0)

    async def add_attachment(self, attachment: Attachment) -> None:
        """Record an upload (the thread must exist)."""
        a = attachment
        packed = msgpack.packb(
            {
                "attachment_id": a.attachment_id,
                "content_type": a.content_type,
                "size": a.size,
                "uploader": a.uploader,
                "at": a.created_at,
            }
        )
        async with redis_unavailable():
            done = await self._add_attachment(
                keys=[self._key(a.thread_id), self._key(a.thread_id, "atts")],
                args=[self._prefix, a.thread_id, a.attachment_id, packed, repr(a.created_at)],
            )
        if not done:
            raise NotFound("no such thread", code="thread.not_found")

    async def attachment(self, thread_id: str, attachment_id: str) -> Attachment | None:
        """An attachment's metadata, or None."""
        async with redis_unavailable():
            raw = await self._client.hget(self._key(thread_id, "atts"), attachment_id)
        return None if raw is None else _attachment(thread_id, raw)

    async def purge(self, closed_before: float, orphans_before: float) -> PurgeResult:
        """Delete old closed threads whole, and old attachments that were never sent."""
        base = f"{self._prefix}:threads"
        async with redis_unavailable():
            due = await self._client.zrangebyscore(
                f"{base}:closed", "-inf", f"({closed_before!r}", start=0, num=_BATCH
            )
            threads: list[str] = []
            keys: list[str] = []
            for raw in due:
                tid = decoded(raw)
                atts = await self._purge_thread(
                    keys=self._keys(tid), args=[self._prefix, tid, repr(closed_before)]
                )
                if atts is None:
                    continue
                threads.append(tid)
                keys += [blob_key(tid, decoded(aid)) for aid in atts]
            unsent = await self._client.zrangebyscore(
                f"{base}:unsent", "-inf", f"({orphans_before!r}", start=0, num=_BATCH
            )
            for raw in unsent:
                tid, _, aid = decoded(raw).partition("/")
                if await self._purge_unsent(
                    keys=[self._key(tid, "atts")], args=[self._prefix, tid, aid]
                ):
                    keys.append(blob_key(tid, aid))
        return PurgeResult(threads=tuple(threads), attachments=len(keys), blob_keys=tuple(keys))


def _matches(thread: Thread, query: ThreadQuery) -> bool:
    if thread.state not in query.states:
        return False
    if query.only is not None and thread.thread_id != query.only:
        return False
    if query.family is not None and thread.family_sub != query.family:
        return False
    if query.clinician is not None and not (
        thread.state is ThreadState.OPEN or thread.assigned_to == query.clinician
    ):
        return False
    return query.before is None or thread.updated_at < query.before


def _attachment(thread_id: str, raw: bytes | str) -> Attachment:
    value = msgpack.unpackb(raw)
    seq = value.get("seq")
    return Attachment(
        thread_id=thread_id,
        attachment_id=str(value["attachment_id"]),
        content_type=str(value["content_type"]),
        size=int(value["size"]),
        uploader=str(value["uploader"]),
        created_at=float(value["at"]),
        seq=None if seq is None else int(seq),
    )
