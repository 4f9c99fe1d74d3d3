"""How threads and messages look on the wire: domain values -> public view Structs."""

from __future__ import annotations

from collections.abc import Iterable

from careline.signaling.thread import AttachmentRef, Message, Thread, ThreadSummary
from careline.signaling.thread_schemas import AttachmentView, MessageView, ThreadView


def attachment_url(thread_id: str, attachment_id: str) -> str:
    """Where a thread's reader downloads an attachment."""
    return f"/api/threads/{thread_id}/attachments/{attachment_id}"


def attachment_view(thread_id: str, ref: AttachmentRef) -> AttachmentView:
    """An attachment reference with its download path."""
    return AttachmentView(
        attachment_id=ref.attachment_id,
        content_type=ref.content_type,
        size=ref.size,
        url=attachment_url(thread_id, ref.attachment_id),
    )


def message_view(message: Message) -> MessageView:
    """A timeline entry as clients see it (its latest version; never a fingerprint)."""
    return MessageView(
        thread_id=message.thread_id,
        seq=message.seq,
        kind=message.kind.value,
        sender=message.sender,
        sender_role=message.sender_role.value,
        client_msg_id=message.client_msg_id,
        created_at=message.created_at,
        text=message.text,
        attachments=[attachment_view(message.thread_id, r) for r in message.attachments],
        event=None if message.event is None else message.event.value,
        subject=message.subject,
        target_seq=message.target_seq,
        version=message.version,
        edited_at=message.edited_at,
        deleted=message.deleted,
    )


def message_views(messages: Iterable[Message]) -> list[MessageView]:
    """Several entries, in the given order."""
    return [message_view(m) for m in messages]


def thread_view(thread: Thread, read_seq: int | None = None) -> ThreadView:
    """A thread; with `read_seq`, also the viewer's unread count."""
    return ThreadView(
        thread_id=thread.thread_id,
        family_sub=thread.family_sub,
        patient_ref=thread.patient_ref,
        state=thread.state.value,
        assigned_to=thread.assigned_to,
        created_at=thread.created_at,
        updated_at=thread.updated_at,
        closed_at=thread.closed_at,
        last_seq=thread.last_seq,
        version=thread.version,
        read_seq=read_seq,
        unread=None if read_seq is None else max(0, thread.last_seq - read_seq),
    )


def summary_view(summary: ThreadSummary) -> ThreadView:
    """A listed thread with the viewer's horizon and unread count."""
    return thread_view(summary.thread, summary.read_seq)
