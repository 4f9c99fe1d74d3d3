"""Public payload schemas of message visits (HTTP bodies and the /threads socket.io namespace).

Inbound Structs are parsed in one call at the edge; outbound views are what clients receive.
Sizes here are outer bounds only: the configured limits (threads.max_text_bytes, ...) are
checked by the ThreadService, which answers with thread.* codes.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from careline.signaling.schemas import OpaqueId, Schema

#: Outer bound of a text before the configured byte limit is checked.
Text = Annotated[str, msgspec.Meta(max_length=1024 * 1024)]
Seq = Annotated[int, msgspec.Meta(ge=0)]
TargetSeq = Annotated[int, msgspec.Meta(ge=1)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=500)]
StateName = Literal["open", "assigned", "answered", "closed"]
AttachmentIds = Annotated[list[OpaqueId], msgspec.Meta(max_length=64)]


# -- inbound -------------------------------------------------------------------------------------


class CreateThreadRequest(Schema, frozen=True):
    """`POST /api/threads`: a parent opens a message visit about one patient.

    `client_thread_id` makes creation idempotent (the same id gives the same thread); an admin
    creates on behalf of a family with `family_sub`.
    """

    patient_ref: OpaqueId
    client_thread_id: OpaqueId | None = None
    family_sub: OpaqueId | None = None


class ListThreadsRequest(Schema, frozen=True):
    """`thread.list` (and the query of `GET /api/threads`)."""

    states: list[StateName] | None = None
    before: float | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50


class ThreadRequest(Schema, frozen=True):
    """Events naming only a thread: `thread.get`, `thread.close`, `thread.reopen`."""

    thread_id: OpaqueId


class AssignRequest(Schema, frozen=True):
    """`thread.assign`: a clinician picks a thread up; an admin names the `assignee`."""

    thread_id: OpaqueId
    assignee: OpaqueId | None = None


class SendRequest(Schema, frozen=True):
    """`thread.send`: a message with text and/or attachments (uploaded first over HTTP)."""

    thread_id: OpaqueId
    client_msg_id: OpaqueId
    text: Text = ""
    attachment_ids: AttachmentIds = msgspec.field(default_factory=list)


class EditRequest(Schema, frozen=True):
    """`thread.edit`: replace the text of one's own message."""

    thread_id: OpaqueId
    client_msg_id: OpaqueId
    target_seq: TargetSeq
    text: Text


class DeleteRequest(Schema, frozen=True):
    """`thread.delete`: delete one's own message (its text and attachments)."""

    thread_id: OpaqueId
    client_msg_id: OpaqueId
    target_seq: TargetSeq


class SyncRequest(Schema, frozen=True):
    """`thread.sync`: entries after `after_seq` (a resync after a reconnect or a gap)."""

    thread_id: OpaqueId
    after_seq: Seq = 0
    limit: Limit = 100


class ReadRequest(Schema, frozen=True):
    """`thread.read`: move the caller's read horizon up to `seq`."""

    thread_id: OpaqueId
    seq: Seq


class TypingRequest(Schema, frozen=True):
    """`thread.typing`: tell the other members that the caller is (or stopped) typing."""

    thread_id: OpaqueId
    typing: bool = True


# -- outbound ------------------------------------------------------------------------------------


class AttachmentView(msgspec.Struct, frozen=True, kw_only=True):
    """An attachment as clients see it; `url` serves its bytes to the thread's readers."""

    attachment_id: str
    content_type: str
    size: int
    url: str


class MessageView(msgspec.Struct, frozen=True, kw_only=True):
    """A timeline entry. EDIT and DELETE stubs name their `target_seq` and carry no text."""

    thread_id: str
    seq: int
    kind: str
    sender: str
    sender_role: str
    client_msg_id: str
    created_at: float
    text: str | None
    attachments: list[AttachmentView]
    event: str | None
    subject: str | None
    target_seq: int | None
    version: int
    edited_at: float | None
    deleted: bool


class ThreadView(msgspec.Struct, frozen=True, kw_only=True):
    """A thread; `read_seq` and `unread` are the viewer's (absent in pushes)."""

    thread_id: str
    family_sub: str
    patient_ref: str
    state: str
    assigned_to: str | None
    created_at: float
    updated_at: float
    closed_at: float | None
    last_seq: int
    version: int
    read_seq: int | None = None
    unread: int | None = None


class CreatedThread(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to `POST /api/threads`; `created` is false when the thread already existed."""

    thread: ThreadView
    created: bool


class OutcomeReply(msgspec.Struct, frozen=True, kw_only=True):
    """The ack of assign, close and reopen; `message` is the system entry (none for a no-op)."""

    thread: ThreadView
    message: MessageView | None


class ThreadList(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to `thread.list` and `GET /api/threads`."""

    threads: list[ThreadView]


class SentReply(msgspec.Struct, frozen=True, kw_only=True):
    """The ack of a send, edit, delete, assign, close or reopen: the stored entry.

    `duplicate` is true when this client_msg_id was stored before (the original is returned);
    `target` is the edited or deleted message as it now reads.
    """

    message: MessageView
    thread: ThreadView
    duplicate: bool
    target: MessageView | None = None


class MessagePage(msgspec.Struct, frozen=True, kw_only=True):
    """Entries of a thread, oldest first; `has_more` says whether a further page exists.

    `targets` are the current versions of messages that edit or delete stubs in `messages` refer
    to, when those messages are not in the page themselves.
    """

    thread_id: str
    messages: list[MessageView]
    targets: list[MessageView]
    last_seq: int
    read_seq: int
    has_more: bool


class ReadReply(msgspec.Struct, frozen=True, kw_only=True):
    """The caller's read horizon after `thread.read`."""

    thread_id: str
    read_seq: int
