"""Rows of the SQLite ThreadStore, and the one-entry append, as run on the writer thread.

Plain functions of a connection: the ThreadStore's jobs and the grouped appends
(sqlite_thread_appends) call them inside the writer's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgpack

from careline.server.storage.thread_codec import (
    THREAD_FIELDS,
    attachment_from_values,
    pack_refs,
    thread_from_values,
    unpack_refs,
)
from careline.signaling.identity import Role
from careline.signaling.thread import (
    Appended,
    Attachment,
    Change,
    Message,
    MessageDraft,
    MessageKind,
    SystemEvent,
    Thread,
    apply_change,
    attachment_refusal,
    blob_key,
    check_access,
    check_target,
    duplicate_mismatch,
    revise,
    stored_message,
)

THREAD_COLUMNS = ", ".join(THREAD_FIELDS)
SELECT_THREAD = f"SELECT {THREAD_COLUMNS} FROM threads WHERE thread_id = ?"  # noqa: S608
INSERT_THREAD = (
    f"INSERT INTO threads ({THREAD_COLUMNS}) VALUES ({', '.join('?' * len(THREAD_FIELDS))})"  # noqa: S608
)
MESSAGE_COLUMNS = (
    "seq, kind, sender, sender_role, client_msg_id, created_at, fingerprint, text, attachments, "
    "event, subject, target_seq, version, edited_at, deleted"
)
SELECT_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM thread_messages WHERE thread_id = ? "  # noqa: S608
INSERT_MESSAGE = (
    f"INSERT INTO thread_messages (thread_id, {MESSAGE_COLUMNS}) "  # noqa: S608
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_NO_REFS: bytes = msgpack.packb([])
ATTACHMENT_COLUMNS = "thread_id, attachment_id, content_type, size, uploader, created_at, seq"


def append_one(conn: sqlite3.Connection, draft: MessageDraft, change: Change) -> Appended:
    thread = check_access(load_thread(conn, draft.thread_id), change)
    row = conn.execute(
        SELECT_MESSAGES + "AND client_msg_id = ?", (draft.thread_id, draft.client_msg_id)
    ).fetchone()
    if row is not None:
        original = message_from_row(draft.thread_id, row)
        if original.fingerprint != draft.fingerprint:
            raise duplicate_mismatch()
        target = None
        if original.target_seq is not None:
            target = load_message(conn, draft.thread_id, original.target_seq)
        return Appended(original, thread, duplicate=True, target=target)
    seq = thread.last_seq + 1
    after = apply_change(thread, change, seq, draft.created_at)
    refs = []
    for attachment_id in draft.attachment_ids:
        found = load_attachment(conn, draft.thread_id, attachment_id)
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
        target = check_target(load_message(conn, draft.thread_id, draft.target_seq), draft)
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
    insert_message(conn, message)
    store_thread(conn, thread, after)
    raise_horizon(conn, draft.thread_id, draft.sender, seq)
    return Appended(message, after, duplicate=False, target=revised, dropped_blobs=dropped)


def store_thread(conn: sqlite3.Connection, before: Thread, after: Thread) -> None:
    """Write what an append changed in the thread row. Indexed columns are set only when they
    change: setting one rewrites its index entries, even to the same value."""
    if (before.state, before.assigned_to, before.closed_at, before.version) == (
        after.state,
        after.assigned_to,
        after.closed_at,
        after.version,
    ):
        conn.execute(
            "UPDATE threads SET updated_at = ?, last_seq = ? WHERE thread_id = ?",
            (after.updated_at, after.last_seq, after.thread_id),
        )
        return
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


def raise_horizon(conn: sqlite3.Connection, thread_id: str, sub: str, seq: int) -> int:
    row = conn.execute(
        "INSERT INTO thread_reads (thread_id, sub, seq) VALUES (?, ?, ?) "
        "ON CONFLICT (thread_id, sub) DO UPDATE SET seq = MAX(seq, excluded.seq) RETURNING seq",
        (thread_id, sub, seq),
    ).fetchone()
    return int(row[0])


def insert_message(conn: sqlite3.Connection, m: Message) -> None:
    conn.execute(INSERT_MESSAGE, message_values(m))


def message_values(m: Message) -> tuple[Any, ...]:
    """A message's row in INSERT_MESSAGE's column order."""
    return (
        m.thread_id,
        m.seq,
        m.kind.value,
        m.sender,
        m.sender_role.value,
        m.client_msg_id,
        m.created_at,
        m.fingerprint,
        m.text,
        msgpack.packb(pack_refs(m.attachments)) if m.attachments else _NO_REFS,
        None if m.event is None else m.event.value,
        m.subject,
        m.target_seq,
        m.version,
        m.edited_at,
        int(m.deleted),
    )


def load_thread(conn: sqlite3.Connection, thread_id: str) -> Thread | None:
    row = conn.execute(SELECT_THREAD, (thread_id,)).fetchone()
    return None if row is None else thread_from_values(row)


def load_message(conn: sqlite3.Connection, thread_id: str, seq: int) -> Message | None:
    row = conn.execute(SELECT_MESSAGES + "AND seq = ?", (thread_id, seq)).fetchone()
    return None if row is None else message_from_row(thread_id, row)


def load_attachment(
    conn: sqlite3.Connection, thread_id: str, attachment_id: str
) -> Attachment | None:
    row = conn.execute(
        f"SELECT {ATTACHMENT_COLUMNS} FROM thread_attachments "  # noqa: S608
        "WHERE thread_id = ? AND attachment_id = ?",
        (thread_id, attachment_id),
    ).fetchone()
    return None if row is None else attachment_from_values(row)


def message_from_row(thread_id: str, row: Sequence[Any]) -> Message:
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
