"""How threads and messages look on the wire: domain values -> public view Structs.

A stored entry is usually shown twice in a row (the push to the other devices, then the sender's
ack), so the last view built of a message and of a thread is kept and handed out again for the
same (immutable) value. Event-loop use only.
"""

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


class _LastView:
    """The view most recently built, and the value (kept alive) it was built from."""

    __slots__ = ("message", "message_view", "thread", "thread_view")

    def __init__(self) -> None:
        self.message: Message | None = None
        self.message_view: MessageView | None = None
        self.thread: Thread | None = None
        self.thread_view: ThreadView | None = None


_last = _LastView()


def message_view(message: Message) -> MessageView:
    """A timeline entry as clients see it (its latest version; never a fingerprint)."""
    if message is _last.message and _last.message_view is not None:
        return _last.message_view
    view = _message_view(message)
    _last.message, _last.message_view = message, view
    return view


def _message_view(message: Message) -> MessageView:
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
    if read_seq is None:
        if thread is _last.thread and _last.thread_view is not None:
            return _last.thread_view
        view = _thread_view(thread, None)
        _last.thread, _last.thread_view = thread, view
        return view
    return _thread_view(thread, read_seq)


def _thread_view(thread: Thread, read_seq: int | None) -> ThreadView:
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
