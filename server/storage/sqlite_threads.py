"""ThreadStore on SQLite: seq, idempotency and state rules inside the writer's transaction.

Every write is one job of the shared writer thread, so it sees every earlier write and is
committed (with fsync) before its caller resumes. Seqs are gap-free because only the writer
assigns them, from the thread row's `last_seq`, in the same transaction as the insert. Appends
queued together are applied as one group (sqlite_thread_appends); the rows and the one-entry
append are in sqlite_thread_rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from careline.server.storage.sqlite_database import SqliteDatabase
from careline.server.storage.sqlite_thread_appends import ThreadAppends
from careline.server.storage.sqlite_thread_rows import (
    ATTACHMENT_COLUMNS,
    INSERT_THREAD,
    SELECT_MESSAGES,
    insert_message,
    load_attachment,
    load_thread,
    message_from_row,
    raise_horizon,
)
from careline.server.storage.thread_codec import (
    THREAD_FIELDS,
    thread_from_values,
    thread_values,
)
from careline.signaling.errors import NotFound
from careline.signaling.thread import (
    Appended,
    Attachment,
    Change,
    Message,
    MessageDraft,
    PurgeResult,
    Thread,
    ThreadQuery,
    ThreadSummary,
    blob_key,
    duplicate_mismatch,
    seq_out_of_range,
    stored_message,
)

_BATCH = 200


class SqliteThreadStore:
    """Threads on the shared SQLite database (writes through its batched writer)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._appends = ThreadAppends()

    async def create(self, thread: Thread, opened: MessageDraft) -> tuple[Thread, bool]:
        """Insert the thread and its `opened` entry (seq 1), or return the existing one."""

        def insert(conn: sqlite3.Connection) -> tuple[Thread, bool]:
            existing = load_thread(conn, thread.thread_id)
            if existing is not None:
                if (existing.family_sub, existing.patient_ref) != (
                    thread.family_sub,
                    thread.patient_ref,
                ):
                    raise duplicate_mismatch()
                return existing, False
            stored = msgspec.structs.replace(thread, last_seq=1)
            conn.execute(INSERT_THREAD, thread_values(stored))
            insert_message(conn, stored_message(opened, 1, ()))
            raise_horizon(conn, thread.thread_id, opened.sender, 1)
            return stored, True

        return await self._db.write(insert)

    async def get(self, thread_id: str) -> Thread | None:
        """The thread, or None."""
        return await self._db.read(lambda conn: load_thread(conn, thread_id))

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
        return await self._db.write_grouped(self._appends, (draft, change))

    async def messages(
        self, thread_id: str, *, after_seq: int = 0, before_seq: int | None = None, limit: int = 100
    ) -> Sequence[Message]:
        """Entries oldest first, after `after_seq` or the last `limit` before `before_seq`."""

        def select(conn: sqlite3.Connection) -> list[Message]:
            if before_seq is not None:
                rows = conn.execute(
                    SELECT_MESSAGES + "AND seq < ? ORDER BY seq DESC LIMIT ?",
                    (thread_id, before_seq, limit),
                ).fetchall()
                rows.reverse()
            else:
                rows = conn.execute(
                    SELECT_MESSAGES + "AND seq > ? ORDER BY seq LIMIT ?",
                    (thread_id, after_seq, limit),
                ).fetchall()
            return [message_from_row(thread_id, row) for row in rows]

        return await self._db.read(select)

    async def get_messages(self, thread_id: str, seqs: Sequence[int]) -> Sequence[Message]:
        """The entries with these seqs, in seq order."""
        wanted = sorted(set(seqs))
        if not wanted:
            return []

        def select(conn: sqlite3.Connection) -> list[Message]:
            marks = ", ".join("?" * len(wanted))
            rows = conn.execute(
                SELECT_MESSAGES + f"AND seq IN ({marks}) ORDER BY seq", (thread_id, *wanted)
            ).fetchall()
            return [message_from_row(thread_id, row) for row in rows]

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
            return raise_horizon(conn, thread_id, sub, seq)

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
            if load_thread(conn, a.thread_id) is None:
                raise NotFound("no such thread", code="thread.not_found")
            conn.execute(
                f"INSERT INTO thread_attachments ({ATTACHMENT_COLUMNS}) "  # noqa: S608
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
            return load_attachment(conn, thread_id, attachment_id)

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
            self._appends.forget(threads)
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
