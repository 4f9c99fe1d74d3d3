"""Converting thread values to and from the plain maps the backends keep (msgpack-able)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from careline.server.storage.reply_text import decoded
from careline.signaling.identity import Role
from careline.signaling.thread import (
    Attachment,
    AttachmentRef,
    Message,
    MessageKind,
    SystemEvent,
    Thread,
    ThreadState,
)


def pack_refs(refs: Sequence[AttachmentRef]) -> list[list[Any]]:
    """Attachment references as nested lists."""
    return [[r.attachment_id, r.content_type, r.size] for r in refs]


def unpack_refs(value: Any) -> tuple[AttachmentRef, ...]:
    """Attachment references from nested lists (an empty map counts as none: Lua packs {})."""
    if not value:
        return ()
    return tuple(AttachmentRef(str(a), str(c), int(s)) for a, c, s in value)


def message_map(message: Message) -> dict[str, Any]:
    """A message as a map; absent optional fields are left out (Lua tables cannot hold nil)."""
    found: dict[str, Any] = {
        "seq": message.seq,
        "kind": message.kind.value,
        "sender": message.sender,
        "role": message.sender_role.value,
        "cmid": message.client_msg_id,
        "at": message.created_at,
        "fp": message.fingerprint,
        "att": pack_refs(message.attachments),
        "version": message.version,
        "deleted": message.deleted,
    }
    optional = {
        "text": message.text,
        "event": None if message.event is None else message.event.value,
        "subject": message.subject,
        "target": message.target_seq,
        "edited_at": message.edited_at,
    }
    found.update({k: v for k, v in optional.items() if v is not None})
    return found


def message_from_map(thread_id: str, value: Mapping[str, Any]) -> Message:
    """A message from its map form."""
    event = value.get("event")
    target = value.get("target")
    edited_at = value.get("edited_at")
    text = value.get("text")
    subject = value.get("subject")
    return Message(
        thread_id=thread_id,
        seq=int(value["seq"]),
        kind=MessageKind(value["kind"]),
        sender=str(value["sender"]),
        sender_role=Role(value["role"]),
        client_msg_id=str(value["cmid"]),
        created_at=float(value["at"]),
        fingerprint=str(value["fp"]),
        text=None if text is None else str(text),
        attachments=unpack_refs(value.get("att")),
        event=None if event is None else SystemEvent(event),
        subject=None if subject is None else str(subject),
        target_seq=None if target is None else int(target),
        version=int(value["version"]),
        edited_at=None if edited_at is None else float(edited_at),
        deleted=bool(value.get("deleted", False)),
    )


THREAD_FIELDS = (
    "thread_id",
    "family_sub",
    "patient_ref",
    "state",
    "assigned_to",
    "created_by",
    "created_at",
    "updated_at",
    "closed_at",
    "last_seq",
    "version",
)


def thread_from_values(values: Sequence[Any]) -> Thread:
    """A thread from its fields in THREAD_FIELDS order (bytes or str; empty means none)."""
    text = [decoded(v) for v in values]
    (
        thread_id,
        family_sub,
        patient_ref,
        state,
        assigned_to,
        created_by,
        created_at,
        updated_at,
        closed_at,
        last_seq,
        version,
    ) = text
    return Thread(
        thread_id=str(thread_id),
        family_sub=str(family_sub),
        patient_ref=str(patient_ref),
        state=ThreadState(state),
        assigned_to=assigned_to or None,
        created_by=str(created_by),
        created_at=float(created_at or 0),
        updated_at=float(updated_at or 0),
        closed_at=float(closed_at) if closed_at not in (None, "") else None,
        last_seq=int(last_seq or 0),
        version=int(version or 0),
    )


def thread_values(thread: Thread) -> list[Any]:
    """A thread's fields in THREAD_FIELDS order (None stays None)."""
    return [
        thread.thread_id,
        thread.family_sub,
        thread.patient_ref,
        thread.state.value,
        thread.assigned_to,
        thread.created_by,
        thread.created_at,
        thread.updated_at,
        thread.closed_at,
        thread.last_seq,
        thread.version,
    ]


def attachment_from_values(values: Sequence[Any]) -> Attachment:
    """An attachment from (thread_id, attachment_id, content_type, size, uploader, at, seq)."""
    thread_id, attachment_id, content_type, size, uploader, created_at, seq = (
        decoded(v) for v in values
    )
    return Attachment(
        thread_id=str(thread_id),
        attachment_id=str(attachment_id),
        content_type=str(content_type),
        size=int(size or 0),
        uploader=str(uploader),
        created_at=float(created_at or 0),
        seq=int(seq) if seq not in (None, "") else None,
    )
