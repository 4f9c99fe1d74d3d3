"""ThreadStore on SQLite: seq, idempotency and state rules inside the writer's transaction.

Every write is one job of the shared writer thread, so it sees every earlier write and is
committed (with fsync) before its caller resumes. Seqs are gap-free because only that job
assigns them, from the thread row's `last_seq`, in the same transaction as the insert.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import msgpack

from careline.server.storage.sqlite_database import SqliteDatabase
from careline.server.storage.thread_codec import (
    THREAD_FIELDS,
    attachment_from_values,
    pack_refs,
    thread_from_values,
    thread_values,
    unpack_refs,
)
from careline.signaling.errors import NotFound
from careline.signaling.identity import Role
from careline.signaling.thread import (
    Appended,
    Attachment,
    Change,
    Message,
    MessageDraft,
    MessageKind,
    PurgeResult,
    SystemEvent,
    Thread,
    ThreadQuery,
    ThreadSummary,
    apply_change,
    attachment_refusal,
    blob_key,
    check_access,
    check_target,
    duplicate_mismatch,
    revise,
    seq_out_of_range,
    stored_message,
)

_THREAD_COLUMNS = ", ".join(THREAD_FIELDS)
_SELECT_THREAD = f"SELECT {_THREAD_COLUMNS} FROM threads WHERE thread_id = ?"  # noqa: S608
_INSERT_THREAD = (
    f"INSERT INTO threads ({_THREAD_COLUMNS}) VALUES ({', '.join('?' * len(THREAD_FIELDS))})"  # noqa: S608
)
_MESSAGE_COLUMNS = (
    "seq, kind, sender, sender_role, client_msg_id, created_at, fingerprint, text, attachments, "
    "event, subject, target_seq, version, edited_at, deleted"
)
_SELECT_MESSAGES = f"SELECT {_MESSAGE_COLUMNS} FROM thread_messages WHERE thread_id = ? "  # noqa: S608
_INSERT_MESSAGE = (
    f"INSERT INTO thread_messages (thread_id, {_MESSAGE_COLUMNS}) "  # noqa: S608
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ATTACHMENT_COLUMNS = "thread_id, attachment_id, content_type, size, uploader, created_at, seq"
_BATCH = 200


class SqliteThreadStore:
    """Threads on the shared SQLite database (writes through its batched writer)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def create(self, thread: Thread, opened: MessageDraft) -> tuple[Thread, bool]:
        """Insert the thread and its `opened` entry (seq 1), or return the existing one."""

        def insert(conn: sqlite3.Connection) -> tuple[Thread, bool]:
            existing = _load_thread(conn, thread.thread_id)
            if existing is not None:
                if (existing.family_sub, existing.patient_ref) != (
                    thread.family_sub,
                    thread.patient_ref,
                ):
                    raise duplicate_mismatch()
                return existing, False
            stored = replace(thread, last_seq=1)
            conn.execute(_INSERT_THREAD, thread_values(stored))
            _insert_message(conn, stored_message(opened, 1, ()))
            _raise_horizon(conn, thread.thread_id, opened.sender, 1)
            return stored, True

        return await self._db.write(insert)

    async def get(self, thread_id: str) -> Thread | None:
        """The thread, or None."""
        return await self._db.read(lambda conn: _load_thread(conn, thread_id))

    async def list_threads(self, query: ThreadQuery) -> Sequence[ThreadSummary]:
        """Threads matching the query, newest activity first, with the viewer's horizon."""
        where = ["t.state IN (%s)" % ", ".join("?" * len(query.states))]  # noqa: UP031
        args: list[Any] = [query.viewer, *(s.value for s in query.states)]
        if query.family is not None:
            where.append("t.family_sub = ?")
            args.append(query.family)
        if query.clinician is not None:
            where.append("(t.state = 'open' OR t.assigned_to = ?)")
            args.append(query.clinician)
        if query.only is not None:
            where.append("t.thread_id = ?")
            args.append(query.only)
        if query.before is not None:
            where.append("t.updated_at < ?")
            args.append(query.before)
        columns = ", ".join(f"t.{name}" for name in THREAD_FIELDS)
        sql = (
            f"SELECT {columns}, COALESCE(r.seq, 0) FROM threads t "  # noqa: S608
            "LEFT JOIN thread_reads r ON r.thread_id = t.thread_id AND r.sub = ? "
            f"WHERE {' AND '.join(where)} ORDER BY t.updated_at DESC, t.thread_id DESC LIMIT ?"
        )
        args.append(query.limit)

        def select(conn: sqlite3.Connection) -> list[ThreadSummary]:
            rows = conn.execute(sql, args).fetchall()
            return [ThreadSummary(thread_from_values(row[:-1]), int(row[-1])) for row in rows]

        return await self._db.read(select)

    async def append(self, draft: MessageDraft, change: Change) -> Appended:
        """Assign the next seq and apply `change` in one transaction of the writer."""
        return await self._db.write(lambda conn: _append(conn, draft, change))

    async def messages(
        self, thread_id: str, *, after_seq: int = 0, before_seq: int | None = None, limit: int = 100
    ) -> Sequence[Message]:
        """Entries oldest first, after `after_seq` or the last `limit` before `before_seq`."""

        def select(conn: sqlite3.Connection) -> list[Message]:
            if before_seq is not None:
                rows = conn.execute(
                    _SELECT_MESSAGES + "AND seq < ? ORDER BY seq DESC LIMIT ?",
                    (thread_id, before_seq, limit),
                ).fetchall()
                rows.reverse()
            else:
                rows = conn.execute(
                    _SELECT_MESSAGES + "AND seq > ? ORDER BY seq LIMIT ?",
                    (thread_id, after_seq, limit),
                ).fetchall()
            return [_message(thread_id, row) for row in rows]

        return await self._db.read(select)

    async def get_messages(self, thread_id: str, seqs: Sequence[int]) -> Sequence[Message]:
        """The entries with these seqs, in seq order."""
        wanted = sorted(set(seqs))
        if not wanted:
            return []

        def select(conn: sqlite3.Connection) -> list[Message]:
            marks = ", ".join("?" * len(wanted))
            rows = conn.execute(
                _SELECT_MESSAGES + f"AND seq IN ({marks}) ORDER BY seq", (thread_id, *wanted)
            ).fetchall()
            return [_message(thread_id, row) for row in rows]

        return await self._db.read(select)

    async def mark_read(self, thread_id: str, sub: str, seq: int) -> int:
        """Raise the read horizon (monotonic) and return it."""

        def upsert(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT last_seq FROM threads WHERE thread_id = ?", (thread_id,)
            ).fetchone()
            if row is None:
                raise NotFound("no such thread", code="thread.not_found")
            if seq > int(row[0]):
                raise seq_out_of_range(seq, int(row[0]))
            return _raise_horizon(conn, thread_id, sub, seq)

        return await self._db.write(upsert)

    async def read_seq(self, thread_id: str, sub: str) -> int:
        """The read horizon, 0 if none."""

        def select(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT seq FROM thread_reads WHERE thread_id = ? AND sub = ?", (thread_id, sub)
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._db.read(select)

    async def add_attachment(self, attachment: Attachment) -> None:
        """Record an upload (the thread must exist)."""
        a = attachment

        def insert(conn: sqlite3.Connection) -> None:
            if _load_thread(conn, a.thread_id) is None:
                raise NotFound("no such thread", code="thread.not_found")
            conn.execute(
                f"INSERT INTO thread_attachments ({_ATTACHMENT_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    a.thread_id,
                    a.attachment_id,
                    a.content_type,
                    a.size,
                    a.uploader,
                    a.created_at,
                    a.seq,
                ),
            )

        await self._db.write(insert)

    async def attachment(self, thread_id: str, attachment_id: str) -> Attachment | None:
        """An attachment's metadata, or None."""

        def select(conn: sqlite3.Connection) -> Attachment | None:
            return _load_attachment(conn, thread_id, attachment_id)

        return await self._db.read(select)

    async def purge(self, closed_before: float, orphans_before: float) -> PurgeResult:
        """Delete old closed threads whole, and old attachments that were never sent."""

        def delete(conn: sqlite3.Connection) -> PurgeResult:
            threads = [
                str(row[0])
                for row in conn.execute(
                    "SELECT thread_id FROM threads WHERE state = 'closed' AND closed_at < ? "
                    "LIMIT ?",
                    (closed_before, _BATCH),
                )
            ]
            keys: list[str] = []
            for thread_id in threads:
                keys += [
                    blob_key(thread_id, str(row[0]))
                    for row in conn.execute(
                        "SELECT attachment_id FROM thread_attachments WHERE thread_id = ?",
                        (thread_id,),
                    )
                ]
                for table in ("thread_messages", "thread_reads", "thread_attachments", "threads"):
                    conn.execute(f"DELETE FROM {table} WHERE thread_id = ?", (thread_id,))  # noqa: S608
            orphans = conn.execute(
                "SELECT thread_id, attachment_id FROM thread_attachments "
                "WHERE seq IS NULL AND created_at < ? LIMIT ?",
                (orphans_before, _BATCH),
            ).fetchall()
            for thread_id, attachment_id in orphans:
                conn.execute(
                    "DELETE FROM thread_attachments WHERE thread_id = ? AND attachment_id = ?",
                    (thread_id, attachment_id),
                )
                keys.append(blob_key(str(thread_id), str(attachment_id)))
            return PurgeResult(threads=tuple(threads), attachments=len(keys), blob_keys=tuple(keys))

        return await self._db.write(delete)


# -- the writer's jobs ---------------------------------------------------------------------------


def _append(conn: sqlite3.Connection, draft: MessageDraft, change: Change) -> Appended:
    thread = check_access(_load_thread(conn, draft.thread_id), change)
    row = conn.execute(
        _SELECT_MESSAGES + "AND client_msg_id = ?", (draft.thread_id, draft.client_msg_id)
    ).fetchone()
    if row is not None:
        original = _message(draft.thread_id, row)
        if original.fingerprint != draft.fingerprint:
            raise duplicate_mismatch()
        target = None
        if original.target_seq is not None:
            target = _load_message(conn, draft.thread_id, original.target_seq)
        return Appended(original, thread, duplicate=True, target=target)
    seq = thread.last_seq + 1
    after = apply_change(thread, change, seq, draft.created_at)
    refs = []
    for attachment_id in draft.attachment_ids:
        found = _load_attachment(conn, draft.thread_id, attachment_id)
        problem = attachment_refusal(found, draft)
        if problem is not None:
            raise problem
        assert found is not None
        refs.append(found.ref())
        conn.execute(
            "UPDATE thread_attachments SET seq = ? WHERE thread_id = ? AND attachment_id = ?",
            (seq, draft.thread_id, attachment_id),
        )
    revised: Message | None = None
    dropped: tuple[str, ...] = ()
    if draft.target_seq is not None and draft.kind in (MessageKind.EDIT, MessageKind.DELETE):
        target = check_target(_load_message(conn, draft.thread_id, draft.target_seq), draft)
        revised = revise(target, draft)
        conn.execute(
            "UPDATE thread_messages SET text = ?, attachments = ?, version = ?, edited_at = ?, "
            "deleted = ? WHERE thread_id = ? AND seq = ?",
            (
                revised.text,
                msgpack.packb(pack_refs(revised.attachments)),
                revised.version,
                revised.edited_at,
                int(revised.deleted),
                draft.thread_id,
                target.seq,
            ),
        )
        if revised.deleted and target.attachments:
            dropped = tuple(blob_key(draft.thread_id, r.attachment_id) for r in target.attachments)
            conn.executemany(
                "DELETE FROM thread_attachments WHERE thread_id = ? AND attachment_id = ?",
                [(draft.thread_id, r.attachment_id) for r in target.attachments],
            )
    message = stored_message(draft, seq, refs)
    _insert_message(conn, message)
    conn.execute(
        "UPDATE threads SET state = ?, assigned_to = ?, updated_at = ?, closed_at = ?, "
        "last_seq = ?, version = ? WHERE thread_id = ?",
        (
            after.state.value,
            after.assigned_to,
            after.updated_at,
            after.closed_at,
            after.last_seq,
            after.version,
            after.thread_id,
        ),
    )
    _raise_horizon(conn, draft.thread_id, draft.sender, seq)
    return Appended(message, after, duplicate=False, target=revised, dropped_blobs=dropped)


def _raise_horizon(conn: sqlite3.Connection, thread_id: str, sub: str, seq: int) -> int:
    row = conn.execute(
        "INSERT INTO thread_reads (thread_id, sub, seq) VALUES (?, ?, ?) "
        "ON CONFLICT (thread_id, sub) DO UPDATE SET seq = MAX(seq, excluded.seq) RETURNING seq",
        (thread_id, sub, seq),
    ).fetchone()
    return int(row[0])


def _insert_message(conn: sqlite3.Connection, m: Message) -> None:
    conn.execute(
        _INSERT_MESSAGE,
        (
            m.thread_id,
            m.seq,
            m.kind.value,
            m.sender,
            m.sender_role.value,
            m.client_msg_id,
            m.created_at,
            m.fingerprint,
            m.text,
            msgpack.packb(pack_refs(m.attachments)),
            None if m.event is None else m.event.value,
            m.subject,
            m.target_seq,
            m.version,
            m.edited_at,
            int(m.deleted),
        ),
    )


def _load_thread(conn: sqlite3.Connection, thread_id: str) -> Thread | None:
    row = conn.execute(_SELECT_THREAD, (thread_id,)).fetchone()
    return None if row is None else thread_from_values(row)


def _load_message(conn: sqlite3.Connection, thread_id: str, seq: int) -> Message | None:
    row = conn.execute(_SELECT_MESSAGES + "AND seq = ?", (thread_id, seq)).fetchone()
    return None if row is None else _message(thread_id, row)


def _load_attachment(
    conn: sqlite3.Connection, thread_id: str, attachment_id: str
) -> Attachment | None:
    row = conn.execute(
        f"SELECT {_ATTACHMENT_COLUMNS} FROM thread_attachments "  # noqa: S608
        "WHERE thread_id = ? AND attachment_id = ?",
        (thread_id, attachment_id),
    ).fetchone()
    return None if row is None else attachment_from_values(row)


def _message(thread_id: str, row: Sequence[Any]) -> Message:
    (
        seq,
        kind,
        sender,
        sender_role,
        client_msg_id,
        created_at,
        fingerprint,
        text,
        attachments,
        event,
        subject,
        target_seq,
        version,
        edited_at,
        deleted,
    ) = row
    return Message(
        thread_id=thread_id,
        seq=int(seq),
        kind=MessageKind(kind),
        sender=str(sender),
        sender_role=Role(sender_role),
        client_msg_id=str(client_msg_id),
        created_at=float(created_at),
        fingerprint=str(fingerprint),
        text=None if text is None else str(text),
        attachments=unpack_refs(msgpack.unpackb(attachments)),
        event=None if event is None else SystemEvent(event),
        subject=None if subject is None else str(subject),
        target_seq=None if target_seq is None else int(target_seq),
        version=int(version),
        edited_at=None if edited_at is None else float(edited_at),
        deleted=bool(deleted),
    )
