"""Message visits as a service: threads, messages, receipts, typing, attachments, retention.

The ThreadStore is the truth: every write is durable before a method returns, and every rule
that must hold atomically travels to the store as a `Change`. This node keeps nothing but rate
limiters and its retention task. Pushes to sockets (through a ThreadChannel) are hints sent
after the write; clients resync with `after_seq` when they see a gap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from careline.signaling.attachment import content_type_of
from careline.signaling.errors import (
    Conflict,
    Forbidden,
    InvalidPayload,
    NotFound,
    SignalingError,
    StoreUnavailable,
    TooLarge,
)
from careline.signaling.identity import Principal, Role
from careline.signaling.rate_limit import RateLimiter
from careline.signaling.stores import AuditEvent, AuditStore, AuditValue
from careline.signaling.thread import (
    WRITABLE,
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
    ThreadState,
    ThreadSummary,
    assign_change,
    check_scope,
    close_change,
    is_member,
    member_subs,
    message_change,
    new_attachment_id,
    new_thread_id,
    reopen_change,
    require_visible,
    seq_out_of_range,
)
from careline.signaling.thread_store import BlobStore, ThreadStore
from careline.signaling.thread_views import message_view, thread_view

log = logging.getLogger(__name__)

#: Clinicians' room: changes to the queue of open threads.
QUEUE_ROOM = "queue"
_CAS_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class ThreadLimits:
    """The deployment's limits for message visits (from the `[threads]` settings)."""

    max_text_bytes: int = 8192
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_attachments: int = 8
    reopen_window_seconds: float = 7 * 86_400
    retention_seconds: float | None = None
    orphan_attachment_seconds: float = 86_400
    purge_interval_seconds: float = 3600
    send_rate_per_second: float = 5.0
    send_burst: int = 20
    typing_rate_per_second: float = 1.0
    typing_burst: int = 3


@dataclass(frozen=True, slots=True)
class Page:
    """Entries of a thread for one reader, and the current versions of messages that edit or
    delete stubs in the page refer to (when those messages are not in the page)."""

    thread: Thread
    messages: tuple[Message, ...]
    targets: tuple[Message, ...]
    read_seq: int
    has_more: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a state change (assign, close, reopen) did; no message when there was nothing to do."""

    thread: Thread
    message: Message | None


class ThreadChannel(Protocol):
    """How the service reaches sockets (the /threads namespace implements it)."""

    async def emit(
        self, event: str, data: Any, to: str | list[str], skip_sid: str | None = None
    ) -> None:
        """Send `event` to the sockets in these rooms."""


class ThreadObserver(Protocol):
    """Counters of the service (server/ implements it with Prometheus metrics)."""

    def message_stored(self, kind: str, duplicate: bool, seconds: float) -> None: ...

    def purged(self, threads: int, attachments: int) -> None: ...


class _NoObserver:
    def message_stored(self, kind: str, duplicate: bool, seconds: float) -> None:
        """Ignore."""

    def purged(self, threads: int, attachments: int) -> None:
        """Ignore."""


def user_room(sub: str, thread_id: str | None = None) -> str:
    """Every socket of a subject (or, for a thread-scoped token, of that subject in a thread)."""
    return f"u:{sub}" if thread_id is None else f"u:{sub}:t:{thread_id}"


def member_rooms(thread: Thread, exclude: str | None = None) -> list[str]:
    """The rooms that reach every device of the thread's members (but `exclude`)."""
    rooms = []
    for sub in member_subs(thread):
        if sub != exclude:
            rooms += [user_room(sub), user_room(sub, thread.thread_id)]
    return rooms


class ThreadService:
    """The message-visit rules driven by sockets and REST.

    Concurrency: every method may be called from concurrent tasks. Nothing here is locked:
    the store applies each change atomically, and state changes retry on a stale version.
    """

    def __init__(
        self,
        store: ThreadStore,
        blobs: BlobStore,
        audit: AuditStore,
        limits: ThreadLimits,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        observer: ThreadObserver | None = None,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._audit = audit
        self._limits = limits
        self._clock = clock
        self._observer: ThreadObserver = observer or _NoObserver()
        self._sends = RateLimiter(
            limits.send_rate_per_second,
            limits.send_burst,
            code="thread.rate_limited",
            clock=monotonic,
        )
        self._typing = RateLimiter(
            limits.typing_rate_per_second,
            limits.typing_burst,
            code="thread.rate_limited",
            clock=monotonic,
        )
        self._channel: ThreadChannel | None = None
        self._retention: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def limits(self) -> ThreadLimits:
        """The configured limits."""
        return self._limits

    def bind(self, channel: ThreadChannel) -> None:
        """Attach the channel (the namespace is built after the service)."""
        self._channel = channel

    # -- threads -------------------------------------------------------------------------------

    async def create(
        self,
        principal: Principal,
        patient_ref: str,
        client_thread_id: str | None = None,
        family_sub: str | None = None,
    ) -> tuple[ThreadSummary, bool]:
        """A parent opens a thread for its family (an admin: for `family_sub`); idempotent on
        `client_thread_id`."""
        check_scope(principal)
        if principal.thread_id is not None:
            raise Forbidden("a thread token cannot open threads", code="thread.not_granted")
        if principal.role is Role.PARENT:
            if family_sub not in (None, principal.sub):
                raise Forbidden("parents open threads for themselves", code="thread.forbidden")
            family = principal.sub
        elif principal.role is Role.ADMIN and family_sub is not None:
            family = family_sub
        else:
            raise Forbidden(
                "only parents (or admins naming one) open threads", code="thread.forbidden"
            )
        now = self._clock()
        thread = Thread(
            thread_id=new_thread_id(family, client_thread_id),
            family_sub=family,
            patient_ref=patient_ref,
            state=ThreadState.OPEN,
            assigned_to=None,
            created_by=principal.sub,
            created_at=now,
            updated_at=now,
            closed_at=None,
            last_seq=0,
            version=1,
        )
        opened = self._system(principal, thread.thread_id, SystemEvent.OPENED, now)
        opened = msgspec.structs.replace(opened, client_msg_id="system:opened")
        stored, created = await self._store.create(thread, opened)
        if created:
            await self._record(stored.thread_id, principal, "thread_opened", {})
            await self._emit(
                "thread.updated",
                {"thread": thread_view(stored)},
                [QUEUE_ROOM, *member_rooms(stored)],
            )
        read = await self._store.read_seq(stored.thread_id, principal.sub)
        return ThreadSummary(stored, read), created

    async def list_threads(
        self,
        principal: Principal,
        states: Sequence[str] | None = None,
        before: float | None = None,
        limit: int = 50,
    ) -> Sequence[ThreadSummary]:
        """The threads the caller may see, newest activity first, with unread counts."""
        check_scope(principal)
        query = ThreadQuery(
            viewer=principal.sub,
            family=principal.sub if principal.role is Role.PARENT else None,
            clinician=principal.sub if principal.role is Role.CLINICIAN else None,
            only=principal.thread_id,
            states=frozenset(ThreadState(s) for s in states) if states else frozenset(ThreadState),
            before=before,
            limit=limit,
        )
        return await self._store.list_threads(query)

    async def get(self, principal: Principal, thread_id: str) -> ThreadSummary:
        """One thread with the caller's read horizon."""
        thread = await self._visible(principal, thread_id)
        return ThreadSummary(thread, await self._store.read_seq(thread_id, principal.sub))

    async def messages(
        self,
        principal: Principal,
        thread_id: str,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> Page:
        """Entries after `after_seq` (default 0), or the last ones before `before_seq`."""
        if after_seq is not None and before_seq is not None:
            raise InvalidPayload("give after_seq or before_seq, not both")
        if (after_seq is not None and after_seq < 0) or (before_seq is not None and before_seq < 1):
            raise InvalidPayload("after_seq must be >= 0 and before_seq >= 1")
        thread = await self._visible(principal, thread_id)
        if after_seq is not None and after_seq > thread.last_seq:
            raise seq_out_of_range(after_seq, thread.last_seq)
        if before_seq is not None:
            found = await self._store.messages(thread_id, before_seq=before_seq, limit=limit)
            has_more = bool(found) and found[0].seq > 1
        else:
            found = await self._store.messages(thread_id, after_seq=after_seq or 0, limit=limit)
            has_more = bool(found) and found[-1].seq < thread.last_seq
        in_page = {m.seq for m in found}
        wanted = {m.target_seq for m in found if m.target_seq is not None} - in_page
        targets = await self._store.get_messages(thread_id, sorted(s for s in wanted if s))
        if found and found[-1].seq > thread.last_seq:
            thread = await self._visible(principal, thread_id)  # entries newer than the first read
        read = await self._store.read_seq(thread_id, principal.sub)
        return Page(thread, tuple(found), tuple(targets), read, has_more)

    # -- messages ------------------------------------------------------------------------------

    async def send(
        self,
        principal: Principal,
        thread_id: str,
        client_msg_id: str,
        text: str = "",
        attachment_ids: Sequence[str] = (),
        *,
        origin: str | None = None,
    ) -> Appended:
        """Store a message (idempotent on client_msg_id) and push it to the members' devices."""
        check_scope(principal, thread_id)
        change = message_change(principal)
        self._check_text(text)
        if not text and not attachment_ids:
            raise InvalidPayload("a message needs text or attachments", code="thread.empty_message")
        if len(attachment_ids) > self._limits.max_attachments:
            raise InvalidPayload(
                f"at most {self._limits.max_attachments} attachments per message",
                code="thread.too_many_attachments",
            )
        if len(set(attachment_ids)) != len(attachment_ids):
            raise InvalidPayload("an attachment is named twice", code="thread.duplicate_attachment")
        self._sends.take(principal.sub)
        draft = MessageDraft(
            thread_id=thread_id,
            client_msg_id=client_msg_id,
            kind=MessageKind.MESSAGE,
            sender=principal.sub,
            sender_role=principal.role,
            created_at=self._clock(),
            text=text,
            attachment_ids=tuple(attachment_ids),
        )
        return await self._append(draft, change, origin)

    async def edit(
        self,
        principal: Principal,
        thread_id: str,
        client_msg_id: str,
        target_seq: int,
        text: str,
        *,
        origin: str | None = None,
    ) -> Appended:
        """Replace the text of one's own message; the timeline gets an edit stub."""
        check_scope(principal, thread_id)
        change = dataclasses.replace(message_change(principal), moves=())
        self._check_text(text)
        if not text:
            raise InvalidPayload("delete the message instead", code="thread.empty_message")
        self._sends.take(principal.sub)
        draft = MessageDraft(
            thread_id=thread_id,
            client_msg_id=client_msg_id,
            kind=MessageKind.EDIT,
            sender=principal.sub,
            sender_role=principal.role,
            created_at=self._clock(),
            text=text,
            target_seq=target_seq,
        )
        appended = await self._append(draft, change, origin)
        if not appended.duplicate and appended.target is not None:
            await self._record(
                thread_id,
                principal,
                "message_edited",
                {"seq": target_seq, "version": appended.target.version},
            )
        return appended

    async def delete(
        self,
        principal: Principal,
        thread_id: str,
        client_msg_id: str,
        target_seq: int,
        *,
        origin: str | None = None,
    ) -> Appended:
        """Delete one's own message (text and attachments); the timeline gets a delete stub."""
        check_scope(principal, thread_id)
        change = dataclasses.replace(message_change(principal), moves=())
        self._sends.take(principal.sub)
        draft = MessageDraft(
            thread_id=thread_id,
            client_msg_id=client_msg_id,
            kind=MessageKind.DELETE,
            sender=principal.sub,
            sender_role=principal.role,
            created_at=self._clock(),
            target_seq=target_seq,
        )
        appended = await self._append(draft, change, origin)
        if appended.dropped_blobs:
            await self._blobs.delete(appended.dropped_blobs)
        if not appended.duplicate:
            await self._record(thread_id, principal, "message_deleted", {"seq": target_seq})
        return appended

    # -- state changes -------------------------------------------------------------------------

    async def assign(
        self, principal: Principal, thread_id: str, assignee: str | None = None
    ) -> Outcome:
        """A clinician picks an open thread up (an admin assigns it to `assignee`)."""

        def plan(thread: Thread) -> tuple[Change, SystemEvent, str | None] | None:
            wanted = principal.sub if principal.role is Role.CLINICIAN else assignee
            if wanted is not None and wanted == thread.assigned_to and thread.state in WRITABLE:
                return None  # a retry of an assignment that went through
            change = assign_change(principal, thread, assignee)
            return change, SystemEvent.ASSIGNED, change.assign_to

        return await self._change_state(principal, thread_id, plan)

    async def close_thread(self, principal: Principal, thread_id: str) -> Outcome:
        """The assigned clinician or an admin closes the thread (closing twice is a no-op)."""

        def plan(thread: Thread) -> tuple[Change, SystemEvent, str | None] | None:
            if thread.state is ThreadState.CLOSED:
                close_change(principal, msgspec.structs.replace(thread, state=ThreadState.ANSWERED))
                return None
            return close_change(principal, thread), SystemEvent.CLOSED, None

        return await self._change_state(principal, thread_id, plan)

    async def reopen(self, principal: Principal, thread_id: str) -> Outcome:
        """A member (or an admin) reopens a closed thread within `reopen_window_seconds`."""

        def plan(thread: Thread) -> tuple[Change, SystemEvent, str | None] | None:
            if thread.state is not ThreadState.CLOSED:
                if not (principal.role is Role.ADMIN or is_member(principal.sub, thread)):
                    raise Forbidden("only the thread's members reopen it", code="thread.forbidden")
                return None
            change = reopen_change(
                principal, thread, self._clock(), self._limits.reopen_window_seconds
            )
            return change, SystemEvent.REOPENED, None

        return await self._change_state(principal, thread_id, plan)

    # -- receipts and typing -------------------------------------------------------------------

    async def mark_read(self, principal: Principal, thread_id: str, seq: int) -> int:
        """Move the caller's read horizon up to `seq` (a lower seq is ignored)."""
        thread = await self._visible(principal, thread_id)
        horizon = await self._store.mark_read(thread_id, principal.sub, seq)
        if is_member(principal.sub, thread):
            payload = {"thread_id": thread_id, "sub": principal.sub, "read_seq": horizon}
            await self._emit("thread.read", payload, member_rooms(thread))
        return horizon

    async def typing(
        self, principal: Principal, thread_id: str, typing: bool, origin: str | None = None
    ) -> None:
        """Tell the other members' devices; never stored."""
        thread = await self._visible(principal, thread_id)
        if not is_member(principal.sub, thread):
            raise Forbidden("only members type in a thread", code="thread.forbidden")
        if thread.state not in WRITABLE:
            raise Conflict("the thread is closed", code="thread.closed")
        self._typing.take(principal.sub)
        payload = {"thread_id": thread_id, "sub": principal.sub, "typing": typing}
        await self._emit("thread.typing", payload, member_rooms(thread, exclude=principal.sub))

    # -- attachments ---------------------------------------------------------------------------

    async def check_upload(self, principal: Principal, thread_id: str) -> None:
        """Raise unless the caller may upload into the thread now (checked before the bytes)."""
        thread = await self._visible(principal, thread_id)
        change = message_change(principal)
        if change.family not in (None, thread.family_sub) or change.assignee not in (
            None,
            thread.assigned_to,
        ):
            if thread.state is ThreadState.OPEN:
                raise Forbidden("pick the thread up before writing", code="thread.not_assigned")
            raise NotFound("no such thread", code="thread.not_found")
        if thread.state not in WRITABLE:
            raise Conflict("the thread is closed", code="thread.closed")

    async def upload(self, principal: Principal, thread_id: str, data: bytes) -> Attachment:
        """Store a photo for a later message of the caller; its type is judged by its bytes."""
        await self.check_upload(principal, thread_id)
        self.check_attachment_size(len(data))
        content_type = content_type_of(data)
        self._sends.take(principal.sub)
        attachment = Attachment(
            thread_id=thread_id,
            attachment_id=new_attachment_id(),
            content_type=content_type,
            size=len(data),
            uploader=principal.sub,
            created_at=self._clock(),
        )
        await self._blobs.put(attachment.blob_key, data)
        try:
            await self._store.add_attachment(attachment)
        except SignalingError:
            await self._blobs.delete([attachment.blob_key])
            raise
        return attachment

    def check_attachment_size(self, size: int) -> None:
        """TooLarge (thread.attachment_too_large) above the configured size."""
        if size > self._limits.max_attachment_bytes:
            raise TooLarge(
                f"attachments are limited to {self._limits.max_attachment_bytes} bytes",
                code="thread.attachment_too_large",
            )

    async def download(
        self, principal: Principal, thread_id: str, attachment_id: str
    ) -> tuple[Attachment, bytes]:
        """An attachment's bytes, for those who may read the thread (unsent: its uploader)."""
        await self._visible(principal, thread_id)
        found = await self._store.attachment(thread_id, attachment_id)
        if found is None or (found.seq is None and found.uploader != principal.sub):
            raise NotFound("no such attachment", code="thread.attachment_not_found")
        data = await self._blobs.get(found.blob_key)
        if data is None:
            raise NotFound("no such attachment", code="thread.attachment_not_found")
        return found, data

    # -- retention -----------------------------------------------------------------------------

    async def purge(self, principal: Principal | None = None) -> PurgeResult:
        """Remove closed threads past retention and unsent uploads; admins may ask for it."""
        if principal is not None and principal.role is not Role.ADMIN:
            raise Forbidden("only admins purge", code="thread.forbidden")
        now = self._clock()
        retention = self._limits.retention_seconds
        closed_before = float("-inf") if retention is None else now - retention
        orphans_before = now - self._limits.orphan_attachment_seconds
        total = PurgeResult()
        while True:
            result = await self._store.purge(closed_before, orphans_before)
            await self._blobs.delete(result.blob_keys)
            for thread_id in result.threads:
                await self._audit.append(thread_id, "system", "thread_purged", {}, at=now)
            total = PurgeResult(
                threads=total.threads + result.threads,
                attachments=total.attachments + result.attachments,
                blob_keys=total.blob_keys + result.blob_keys,
            )
            if not result.threads and not result.blob_keys:
                break
        if total.threads or total.attachments:
            log.info(
                "retention purged %d threads and %d attachments",
                len(total.threads),
                total.attachments,
            )
        self._observer.purged(len(total.threads), total.attachments)
        return total

    def start(self) -> None:
        """Start the periodic retention purge (owned by the service; `close` stops it)."""
        if self._retention is None and not self._closed:
            self._retention = asyncio.get_running_loop().create_task(
                self._retention_loop(), name="careline-thread-retention"
            )

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(self._limits.purge_interval_seconds)
            try:
                await self.purge()
            except StoreUnavailable as exc:
                log.warning("retention purge skipped: %s", exc.code)
            except Exception:
                log.exception("retention purge failed")

    async def close(self) -> None:
        """Stop the retention task; safe to call twice."""
        self._closed = True
        task, self._retention = self._retention, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- socket rooms ----------------------------------------------------------------------------

    def rooms_for(self, principal: Principal) -> list[str]:
        """The rooms a new socket of `principal` enters to get its pushes."""
        if principal.role not in (Role.PARENT, Role.CLINICIAN) or principal.visit_id is not None:
            return []
        rooms = [user_room(principal.sub, principal.thread_id)]
        if principal.role is Role.CLINICIAN and principal.thread_id is None:
            rooms.append(QUEUE_ROOM)
        return rooms

    # -- internals -------------------------------------------------------------------------------

    def _check_text(self, text: str) -> None:
        if len(text) * 4 > self._limits.max_text_bytes and (
            len(text.encode()) > self._limits.max_text_bytes
        ):
            raise TooLarge(
                f"texts are limited to {self._limits.max_text_bytes} bytes (UTF-8)",
                code="thread.text_too_large",
            )

    async def audit_trail(
        self, principal: Principal, thread_id: str, after_seq: int = 0, limit: int = 100
    ) -> Sequence[AuditEvent]:
        """The thread's audit trail, oldest first: for admins (also once the thread is purged)
        and for the clinicians who see the thread; its family gets Forbidden."""
        check_scope(principal, thread_id)
        if principal.role is Role.ADMIN:
            events = await self._audit.list(thread_id, after_seq=after_seq, limit=limit)
            if not events and await self._store.get(thread_id) is None:
                raise NotFound("no such thread", code="thread.not_found")
            return events
        await self._visible(principal, thread_id)
        if principal.role is not Role.CLINICIAN:
            raise Forbidden(
                "only clinicians and admins see a thread's audit trail", code="thread.forbidden"
            )
        return await self._audit.list(thread_id, after_seq=after_seq, limit=limit)

    async def _visible(self, principal: Principal, thread_id: str) -> Thread:
        check_scope(principal, thread_id)
        return require_visible(principal, await self._store.get(thread_id))

    def _system(
        self,
        principal: Principal,
        thread_id: str,
        event: SystemEvent,
        at: float,
        subject: str | None = None,
    ) -> MessageDraft:
        return MessageDraft(
            thread_id=thread_id,
            client_msg_id=f"system:{event.value}:{secrets.token_urlsafe(9)}",
            kind=MessageKind.SYSTEM,
            sender=principal.sub,
            sender_role=principal.role,
            created_at=at,
            event=event,
            subject=subject,
        )

    async def _append(self, draft: MessageDraft, change: Change, origin: str | None) -> Appended:
        started = time.perf_counter()
        appended = await self._store.append(draft, change)
        self._observer.message_stored(
            draft.kind.value, appended.duplicate, time.perf_counter() - started
        )
        if not appended.duplicate:
            await self._push(appended, origin)
        return appended

    async def _change_state(
        self,
        principal: Principal,
        thread_id: str,
        plan: Callable[[Thread], tuple[Change, SystemEvent, str | None] | None],
    ) -> Outcome:
        for attempt in range(_CAS_ATTEMPTS):
            thread = await self._visible(principal, thread_id)
            planned = plan(thread)
            if planned is None:
                return Outcome(thread, None)
            change, event, subject = planned
            draft = self._system(principal, thread_id, event, self._clock(), subject)
            try:
                appended = await self._append(draft, change, None)
            except Conflict as exc:
                if exc.code != "thread.stale" or attempt == _CAS_ATTEMPTS - 1:
                    raise
                continue
            await self._record(
                thread_id, principal, f"thread_{event.value}", {"version": appended.thread.version}
            )
            await self._emit(
                "thread.updated", {"thread": thread_view(appended.thread)}, [QUEUE_ROOM]
            )
            return Outcome(appended.thread, appended.message)
        raise AssertionError("unreachable")

    async def _push(self, appended: Appended, origin: str | None) -> None:
        payload: dict[str, Any] = {
            "thread_id": appended.message.thread_id,
            "message": message_view(appended.message),
            "thread": thread_view(appended.thread),
            "target": None if appended.target is None else message_view(appended.target),
        }
        await self._emit("thread.message", payload, member_rooms(appended.thread), origin)
        if (
            appended.thread.state is ThreadState.OPEN
            and appended.message.kind is MessageKind.MESSAGE
        ):
            await self._emit(
                "thread.updated", {"thread": thread_view(appended.thread)}, [QUEUE_ROOM]
            )

    async def _emit(
        self, event: str, payload: dict[str, Any], rooms: list[str], skip: str | None = None
    ) -> None:
        if self._channel is None or not rooms:
            return
        try:
            await self._channel.emit(event, payload, rooms, skip)
        except ConnectionError:
            log.info("push of %s lost a connection", event)

    async def _record(
        self, thread_id: str, principal: Principal, action: str, detail: dict[str, AuditValue]
    ) -> None:
        await self._audit.append(thread_id, principal.sub, action, detail, at=self._clock())
