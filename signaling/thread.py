"""The message-visit domain: thread states, messages, who may do what, and checked changes.

Pure values and functions, no I/O. The ThreadService builds a `Change` from these rules; every
ThreadStore applies it atomically with the append it guards (SQLite calls `apply_change` inside
its writer transaction; Redis runs the same checks in Lua and maps its refusals back through
`refusal`), so two nodes can never both win a state change.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from careline.signaling.errors import Conflict, Forbidden, InvalidPayload, NotFound
from careline.signaling.identity import Principal, Role


class ThreadState(enum.StrEnum):
    """open -> assigned -> answered -> closed; a family reply moves answered back to assigned."""

    OPEN = "open"
    ASSIGNED = "assigned"
    ANSWERED = "answered"
    CLOSED = "closed"


class MessageKind(enum.StrEnum):
    """What a timeline entry is. Edits and deletions are entries of their own (stubs)."""

    MESSAGE = "message"
    SYSTEM = "system"
    EDIT = "edit"
    DELETE = "delete"


class SystemEvent(enum.StrEnum):
    """System entries the server writes into a thread's timeline."""

    OPENED = "opened"
    ASSIGNED = "assigned"
    CLOSED = "closed"
    REOPENED = "reopened"


_T = ThreadState
#: Legal thread moves. Reopening goes back to assigned (or open if nobody was assigned).
TRANSITIONS: Mapping[ThreadState, frozenset[ThreadState]] = {
    _T.OPEN: frozenset({_T.ASSIGNED, _T.CLOSED}),
    _T.ASSIGNED: frozenset({_T.ANSWERED, _T.CLOSED}),
    _T.ANSWERED: frozenset({_T.ASSIGNED, _T.CLOSED}),
    _T.CLOSED: frozenset({_T.OPEN, _T.ASSIGNED}),
}
#: States in which members may write.
WRITABLE = frozenset({_T.OPEN, _T.ASSIGNED, _T.ANSWERED})
#: Roles that may use message visits at all.
THREAD_ROLES = frozenset({Role.PARENT, Role.CLINICIAN, Role.ADMIN})


class Thread(msgspec.Struct, frozen=True):
    """A message visit of one family (parent sub) about one patient (opaque reference).

    `last_seq` is the seq of the newest timeline entry; `version` increases with every change
    of state or assignee (compare-and-set for state changes).
    """

    thread_id: str
    family_sub: str
    patient_ref: str
    state: ThreadState
    assigned_to: str | None
    created_by: str
    created_at: float
    updated_at: float
    closed_at: float | None
    last_seq: int
    version: int


class AttachmentRef(msgspec.Struct, frozen=True):
    """An attachment as a message carries it: opaque id, type found by content, size."""

    attachment_id: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Attachment:
    """An uploaded attachment's metadata; `seq` is the message it belongs to (None: not sent)."""

    thread_id: str
    attachment_id: str
    content_type: str
    size: int
    uploader: str
    created_at: float
    seq: int | None = None

    @property
    def blob_key(self) -> str:
        """Where its bytes are kept in the BlobStore."""
        return blob_key(self.thread_id, self.attachment_id)

    def ref(self) -> AttachmentRef:
        """The reference a message carries."""
        return AttachmentRef(self.attachment_id, self.content_type, self.size)


class MessageDraft(msgspec.Struct, frozen=True):
    """A timeline entry before the store gives it a seq.

    For EDIT, `text` is the new text of the target (the stub itself keeps none); for MESSAGE,
    `attachment_ids` name uploads of the sender in this thread.
    """

    thread_id: str
    client_msg_id: str
    kind: MessageKind
    sender: str
    sender_role: Role
    created_at: float
    text: str | None = None
    attachment_ids: tuple[str, ...] = ()
    event: SystemEvent | None = None
    subject: str | None = None
    target_seq: int | None = None

    #: What a retry with the same client_msg_id must match (never the time); computed from the
    #: other fields when the draft is made (never pass it).
    fingerprint: str = ""

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "fingerprint", fingerprint(self))


class Message(msgspec.Struct, frozen=True):
    """A stored timeline entry. Edited and deleted messages show their latest version only."""

    thread_id: str
    seq: int
    kind: MessageKind
    sender: str
    sender_role: Role
    client_msg_id: str
    created_at: float
    fingerprint: str
    text: str | None = None
    attachments: tuple[AttachmentRef, ...] = ()
    event: SystemEvent | None = None
    subject: str | None = None
    target_seq: int | None = None
    version: int = 1
    edited_at: float | None = None
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """What must hold, atomically with an append, and what the append changes in the thread.

    Checked in this order: `family` / `assignee` (access, before idempotency, so a stranger
    learns nothing), then after the idempotency check `expected_version` and `allowed`. Then
    `moves` (state before -> state after) and `assign_to` apply; entering closed sets
    `closed_at`.
    """

    allowed: frozenset[ThreadState]
    family: str | None = None
    assignee: str | None = None
    expected_version: int | None = None
    moves: tuple[tuple[ThreadState, ThreadState], ...] = ()
    assign_to: str | None = None


class Appended(msgspec.Struct, frozen=True):
    """What an append returns: the entry, the thread after it, and whether it was a retry."""

    message: Message
    thread: Thread
    duplicate: bool
    target: Message | None = None
    dropped_blobs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ThreadQuery:
    """Which threads a listing returns, newest activity first.

    `family`: only this family's threads; `clinician`: the open queue plus threads assigned to
    this sub; neither: every thread (admins). `only` restricts to one thread (scoped tokens).
    """

    viewer: str
    family: str | None = None
    clinician: str | None = None
    only: str | None = None
    states: frozenset[ThreadState] = frozenset(ThreadState)
    before: float | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    """A thread as listed for one viewer, with the viewer's read horizon."""

    thread: Thread
    read_seq: int

    @property
    def unread(self) -> int:
        """Entries after the viewer's read horizon (sending moves the sender's horizon)."""
        return max(0, self.thread.last_seq - self.read_seq)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What a retention purge removed; `blob_keys` are left for the BlobStore to delete."""

    threads: tuple[str, ...] = ()
    attachments: int = 0
    blob_keys: tuple[str, ...] = field(default=())


# -- ids and fingerprints ------------------------------------------------------------------------


def new_thread_id(family_sub: str, client_thread_id: str | None) -> str:
    """A random id, or one derived from (family, client_thread_id) so creation is idempotent."""
    if client_thread_id is None:
        return f"t-{secrets.token_urlsafe(16)}"
    digest = hashlib.sha256(f"{family_sub}\0{client_thread_id}".encode()).hexdigest()
    return f"t-{digest[:32]}"


def new_attachment_id() -> str:
    """A random opaque attachment id."""
    return f"a-{secrets.token_urlsafe(16)}"


def blob_key(thread_id: str, attachment_id: str) -> str:
    """The BlobStore key of an attachment's bytes."""
    return f"{thread_id}/{attachment_id}"


#: msgpack of the fingerprinted fields: the same bytes msgpack.packb gave for them (stored
#: fingerprints of earlier versions still match), in a fraction of its time.
_PACK = msgspec.msgpack.Encoder().encode


def fingerprint(draft: MessageDraft) -> str:
    """A digest of everything a retry must repeat: sender, kind, content, target."""
    packed = _PACK(
        [
            draft.sender,
            draft.kind.value,
            draft.text,
            draft.attachment_ids,
            None if draft.event is None else draft.event.value,
            draft.subject,
            draft.target_seq,
        ]
    )
    return hashlib.sha256(packed).hexdigest()[:32]


# -- who may do what -----------------------------------------------------------------------------


def check_scope(principal: Principal, thread_id: str | None = None) -> None:
    """Raise Forbidden unless the token may use threads (and `thread_id`, if given)."""
    if principal.role not in THREAD_ROLES:
        raise Forbidden("this role has no message visits", code="thread.forbidden")
    if principal.visit_id is not None:
        raise Forbidden("a visit token cannot open message visits", code="thread.not_granted")
    if thread_id is not None and principal.thread_id not in (None, thread_id):
        raise Forbidden("the token is for another thread", code="thread.not_granted")


def can_view(principal: Principal, thread: Thread) -> bool:
    """Parents see their family's threads; clinicians the open queue and their own; admins all."""
    if principal.thread_id is not None and principal.thread_id != thread.thread_id:
        return False
    if principal.role is Role.ADMIN:
        return True
    if principal.role is Role.PARENT:
        return thread.family_sub == principal.sub
    if principal.role is Role.CLINICIAN:
        return thread.state is ThreadState.OPEN or thread.assigned_to == principal.sub
    return False


def is_member(sub: str, thread: Thread) -> bool:
    """The family and the assigned clinician: those who write and get pushes."""
    return sub in (thread.family_sub, thread.assigned_to)


def member_subs(thread: Thread) -> tuple[str, ...]:
    """Subs that get the thread's pushes."""
    return (
        (thread.family_sub,)
        if thread.assigned_to is None
        else (
            thread.family_sub,
            thread.assigned_to,
        )
    )


def require_visible(principal: Principal, thread: Thread | None) -> Thread:
    """The thread if the principal may see it; NotFound otherwise (existence is not leaked)."""
    check_scope(principal, None if thread is None else thread.thread_id)
    if thread is None or not can_view(principal, thread):
        raise NotFound("no such thread", code="thread.not_found")
    return thread


def message_change(principal: Principal) -> Change:
    """The guard of a family member's or the assigned clinician's message (or edit)."""
    if principal.role is Role.PARENT or principal.role is Role.CLINICIAN:
        return _message_change(principal.role, principal.sub)
    raise Forbidden("only the family and the assigned clinician write", code="thread.forbidden")


@functools.lru_cache(maxsize=4096)
def _message_change(role: Role, sub: str) -> Change:
    """The same (immutable) guard for every message of one writer."""
    if role is Role.PARENT:
        return Change(
            allowed=WRITABLE,
            family=sub,
            moves=((ThreadState.ANSWERED, ThreadState.ASSIGNED),),
        )
    return Change(
        allowed=frozenset({ThreadState.ASSIGNED, ThreadState.ANSWERED}),
        assignee=sub,
        moves=((ThreadState.ASSIGNED, ThreadState.ANSWERED),),
    )


def assign_change(principal: Principal, thread: Thread, assignee: str | None) -> Change:
    """A clinician picks an open thread up; an admin assigns any thread that is not closed."""
    if principal.role is Role.CLINICIAN:
        if assignee not in (None, principal.sub):
            raise Forbidden("clinicians assign threads to themselves", code="thread.forbidden")
        if thread.state is ThreadState.CLOSED:
            raise Conflict("the thread is closed", code="thread.closed")
        if thread.state is not ThreadState.OPEN:
            raise Conflict("someone picked this thread up already", code="thread.already_assigned")
        target = principal.sub
    elif principal.role is Role.ADMIN:
        if assignee is None:
            raise Forbidden("an admin names the clinician to assign", code="thread.forbidden")
        if thread.state is ThreadState.CLOSED:
            raise Conflict("the thread is closed", code="thread.closed")
        target = assignee
    else:
        raise Forbidden("only clinicians and admins assign threads", code="thread.forbidden")
    check_transition(thread.state, ThreadState.ASSIGNED, same_ok=True)
    return Change(
        allowed=WRITABLE,
        expected_version=thread.version,
        moves=((ThreadState.OPEN, ThreadState.ASSIGNED),),
        assign_to=target,
    )


def close_change(principal: Principal, thread: Thread) -> Change:
    """The assigned clinician or an admin closes a thread."""
    if not (
        principal.role is Role.ADMIN
        or (principal.role is Role.CLINICIAN and thread.assigned_to == principal.sub)
    ):
        raise Forbidden("only the assigned clinician or an admin closes", code="thread.forbidden")
    check_transition(thread.state, ThreadState.CLOSED)
    return Change(
        allowed=WRITABLE,
        expected_version=thread.version,
        moves=tuple((state, ThreadState.CLOSED) for state in WRITABLE),
    )


def reopen_change(principal: Principal, thread: Thread, now: float, window: float) -> Change:
    """The family, the assigned clinician or an admin reopens a closed thread within the window."""
    if not (principal.role is Role.ADMIN or is_member(principal.sub, thread)):
        raise Forbidden("only the thread's members reopen it", code="thread.forbidden")
    target = ThreadState.OPEN if thread.assigned_to is None else ThreadState.ASSIGNED
    check_transition(thread.state, target)
    closed_at = thread.closed_at if thread.closed_at is not None else thread.updated_at
    if principal.role is not Role.ADMIN and now > closed_at + window:
        raise Conflict(
            "the thread was closed too long ago to reopen", code="thread.reopen_window_passed"
        )
    return Change(
        allowed=frozenset({ThreadState.CLOSED}),
        expected_version=thread.version,
        moves=((ThreadState.CLOSED, target),),
    )


def check_transition(current: ThreadState, target: ThreadState, *, same_ok: bool = False) -> None:
    """Raise Conflict unless a thread may move from `current` to `target`."""
    if same_ok and current is target:
        return
    if target not in TRANSITIONS[current]:
        if current is ThreadState.CLOSED:
            raise Conflict("the thread is closed", code="thread.closed")
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "nothing"
        raise Conflict(
            f"thread cannot become {target.value}: expected one of {allowed}, got {current.value}",
            code="thread.bad_transition",
        )


# -- applying a change (the stores' atomic step) -------------------------------------------------


class Refusal(enum.StrEnum):
    """Why a store refused a Change; shared by every backend and mapped by `refusal`."""

    NO_THREAD = "NO_THREAD"
    NOT_FAMILY = "NOT_FAMILY"
    NOT_ASSIGNEE = "NOT_ASSIGNEE"
    STALE = "STALE"
    STATE = "STATE"


def check_access(thread: Thread | None, change: Change) -> Thread:
    """The access half of a Change: the thread exists and the writer belongs to it."""
    if thread is None:
        raise refusal(Refusal.NO_THREAD, None)
    if change.family is not None and thread.family_sub != change.family:
        raise refusal(Refusal.NOT_FAMILY, thread.state)
    if change.assignee is not None and thread.assigned_to != change.assignee:
        raise refusal(Refusal.NOT_ASSIGNEE, thread.state)
    return thread


def apply_change(thread: Thread, change: Change, seq: int, at: float) -> Thread:
    """The thread after appending entry `seq` at `at` under `change` (access already checked)."""
    if change.expected_version is not None and thread.version != change.expected_version:
        raise refusal(Refusal.STALE, thread.state)
    if thread.state not in change.allowed:
        raise refusal(Refusal.STATE, thread.state)
    state = dict(change.moves).get(thread.state, thread.state)
    assigned_to = change.assign_to if change.assign_to is not None else thread.assigned_to
    changed = state is not thread.state or assigned_to != thread.assigned_to
    return msgspec.structs.replace(
        thread,
        state=state,
        assigned_to=assigned_to,
        updated_at=at,
        closed_at=at if state is ThreadState.CLOSED and changed else thread.closed_at,
        last_seq=seq,
        version=thread.version + 1 if changed else thread.version,
    )


def refusal(reason: Refusal, state: ThreadState | None) -> Exception:
    """The client-facing error of a refused Change."""
    if reason is Refusal.NOT_ASSIGNEE and state is ThreadState.OPEN:
        return Forbidden("pick the thread up before writing", code="thread.not_assigned")
    if reason in (Refusal.NO_THREAD, Refusal.NOT_FAMILY, Refusal.NOT_ASSIGNEE):
        return NotFound("no such thread", code="thread.not_found")
    if reason is Refusal.STALE:
        return Conflict("the thread changed meanwhile", code="thread.stale")
    if state is ThreadState.CLOSED:
        return Conflict("the thread is closed", code="thread.closed")
    return Conflict(
        f"not allowed while the thread is {state.value if state else 'missing'}",
        code="thread.bad_state",
    )


def seq_out_of_range(seq: int, last_seq: int) -> InvalidPayload:
    """A seq beyond the thread's newest entry (a client that is ahead of the server)."""
    return InvalidPayload(
        f"seq {seq} is beyond the thread's last seq {last_seq}", code="thread.seq_out_of_range"
    )


def duplicate_mismatch() -> Exception:
    """A client_msg_id reused with different content."""
    return Conflict(
        "this client_msg_id was used for a different message", code="thread.duplicate_mismatch"
    )


def target_refusal(target: Message | None, draft: MessageDraft) -> Exception | None:
    """Why the draft's sender may not edit or delete `target` (None: they may)."""
    if target is None:
        return NotFound("no such message in this thread", code="thread.message_not_found")
    if target.kind is not MessageKind.MESSAGE:
        return Conflict("only messages can be edited or deleted", code="thread.not_editable")
    if target.sender != draft.sender:
        return Forbidden("only the sender edits or deletes a message", code="thread.not_sender")
    if target.deleted:
        return Conflict("the message was deleted", code="thread.message_deleted")
    return None


def check_target(target: Message | None, draft: MessageDraft) -> Message:
    """The message an edit or deletion changes, if the draft's sender may change it."""
    problem = target_refusal(target, draft)
    if problem is not None:
        raise problem
    assert target is not None
    return target


def revise(target: Message, draft: MessageDraft) -> Message:
    """The target after an edit (new text, next version) or a deletion (emptied)."""
    if draft.kind is MessageKind.DELETE:
        return msgspec.structs.replace(
            target,
            text="",
            attachments=(),
            version=target.version + 1,
            edited_at=draft.created_at,
            deleted=True,
        )
    return msgspec.structs.replace(
        target, text=draft.text, version=target.version + 1, edited_at=draft.created_at
    )


def stored_message(draft: MessageDraft, seq: int, attachments: Sequence[AttachmentRef]) -> Message:
    """The timeline entry a draft becomes. Edit and delete stubs keep no text."""
    stub = draft.kind in (MessageKind.EDIT, MessageKind.DELETE)
    return Message(
        thread_id=draft.thread_id,
        seq=seq,
        kind=draft.kind,
        sender=draft.sender,
        sender_role=draft.sender_role,
        client_msg_id=draft.client_msg_id,
        created_at=draft.created_at,
        fingerprint=draft.fingerprint,
        text=None if stub else draft.text,
        attachments=tuple(attachments),
        event=draft.event,
        subject=draft.subject,
        target_seq=draft.target_seq,
    )


def attachment_refusal(found: Attachment | None, draft: MessageDraft) -> Exception | None:
    """Why an attachment cannot go into the draft's message (None: it can)."""
    if found is None or found.uploader != draft.sender:
        return NotFound("no such attachment in this thread", code="thread.attachment_not_found")
    if found.seq is not None:
        return Conflict(
            "this attachment belongs to another message", code="thread.attachment_in_use"
        )
    return None
