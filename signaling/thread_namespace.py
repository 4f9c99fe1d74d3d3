"""The /threads socket.io namespace: thin routing of message-visit events to the ThreadService.

On connect, a socket joins the rooms of its subject (every device of a sub gets the same
pushes; a thread-scoped token only that thread's) and, for clinicians, the queue room.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from careline.signaling.identity import Authenticator, Principal
from careline.signaling.observer import SignalingObserver
from careline.signaling.socket_edge import EdgeNamespace, Route
from careline.signaling.thread import Appended
from careline.signaling.thread_schemas import (
    AssignRequest,
    DeleteRequest,
    EditRequest,
    ListThreadsRequest,
    MessagePage,
    OutcomeReply,
    ReadReply,
    ReadRequest,
    SendRequest,
    SentReply,
    SyncRequest,
    ThreadList,
    ThreadRequest,
    ThreadView,
    TypingRequest,
)
from careline.signaling.thread_service import Outcome, Page, ThreadService
from careline.signaling.thread_views import message_view, message_views, summary_view, thread_view

NAMESPACE = "/threads"


class ThreadNamespace(EdgeNamespace):
    """Parse -> ThreadService -> reply. Also the service's ThreadChannel to clients."""

    def __init__(
        self,
        service: ThreadService,
        authenticator: Authenticator,
        observer: SignalingObserver,
        clock: Callable[[], float] = time.time,
        expiry_grace: float = 0.0,
    ) -> None:
        super().__init__(NAMESPACE, authenticator, observer, clock, expiry_grace)
        self._service = service
        service.bind(self)
        self.routes.update(
            {
                "thread.list": Route(ListThreadsRequest, self._list),
                "thread.get": Route(ThreadRequest, self._get),
                "thread.send": Route(SendRequest, self._send),
                "thread.edit": Route(EditRequest, self._edit),
                "thread.delete": Route(DeleteRequest, self._delete),
                "thread.sync": Route(SyncRequest, self._sync),
                "thread.read": Route(ReadRequest, self._read),
                "thread.typing": Route(TypingRequest, self._typing),
                "thread.assign": Route(AssignRequest, self._assign),
                "thread.close": Route(ThreadRequest, self._close),
                "thread.reopen": Route(ThreadRequest, self._reopen),
            }
        )

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: str | list[str] | None = None,
        skip_sid: str | None = None,
        **kw: Any,
    ) -> None:
        """Send to socket ids or rooms of this namespace (ThreadChannel). Views stay Structs:
        the server encodes them with msgspec, once whatever the number of recipients."""
        await self.server.emit(
            event, data, to=to, skip_sid=skip_sid, namespace=self.namespace, **kw
        )

    async def joined(self, sid: str, principal: Principal) -> None:
        """Enter the rooms whose pushes this socket gets."""
        for room in self._service.rooms_for(principal):
            await self.enter_room(sid, room)

    async def _list(
        self, sid: str, principal: Principal, request: ListThreadsRequest
    ) -> ThreadList:
        found = await self._service.list_threads(
            principal, request.states, request.before, request.limit
        )
        return ThreadList(threads=[summary_view(s) for s in found])

    async def _get(self, sid: str, principal: Principal, request: ThreadRequest) -> ThreadView:
        return summary_view(await self._service.get(principal, request.thread_id))

    async def _send(self, sid: str, principal: Principal, request: SendRequest) -> SentReply:
        appended = await self._service.send(
            principal,
            request.thread_id,
            request.client_msg_id,
            request.text,
            request.attachment_ids,
            origin=sid,
        )
        return sent_reply(appended)

    async def _edit(self, sid: str, principal: Principal, request: EditRequest) -> SentReply:
        appended = await self._service.edit(
            principal,
            request.thread_id,
            request.client_msg_id,
            request.target_seq,
            request.text,
            origin=sid,
        )
        return sent_reply(appended)

    async def _delete(self, sid: str, principal: Principal, request: DeleteRequest) -> SentReply:
        appended = await self._service.delete(
            principal, request.thread_id, request.client_msg_id, request.target_seq, origin=sid
        )
        return sent_reply(appended)

    async def _sync(self, sid: str, principal: Principal, request: SyncRequest) -> MessagePage:
        page = await self._service.messages(
            principal, request.thread_id, after_seq=request.after_seq, limit=request.limit
        )
        return message_page(page)

    async def _read(self, sid: str, principal: Principal, request: ReadRequest) -> ReadReply:
        horizon = await self._service.mark_read(principal, request.thread_id, request.seq)
        return ReadReply(thread_id=request.thread_id, read_seq=horizon)

    async def _typing(self, sid: str, principal: Principal, request: TypingRequest) -> None:
        await self._service.typing(principal, request.thread_id, request.typing, origin=sid)

    async def _assign(self, sid: str, principal: Principal, request: AssignRequest) -> OutcomeReply:
        return outcome_reply(
            await self._service.assign(principal, request.thread_id, request.assignee)
        )

    async def _close(self, sid: str, principal: Principal, request: ThreadRequest) -> OutcomeReply:
        return outcome_reply(await self._service.close_thread(principal, request.thread_id))

    async def _reopen(self, sid: str, principal: Principal, request: ThreadRequest) -> OutcomeReply:
        return outcome_reply(await self._service.reopen(principal, request.thread_id))


def sent_reply(appended: Appended) -> SentReply:
    """The ack of a stored entry."""
    return SentReply(
        message=message_view(appended.message),
        thread=thread_view(appended.thread),
        duplicate=appended.duplicate,
        target=None if appended.target is None else message_view(appended.target),
    )


def outcome_reply(outcome: Outcome) -> OutcomeReply:
    """The ack of assign, close and reopen: the thread, and the system entry if one was written."""
    return OutcomeReply(
        thread=thread_view(outcome.thread),
        message=None if outcome.message is None else message_view(outcome.message),
    )


def message_page(page: Page) -> MessagePage:
    """A page of entries as clients see it."""
    return MessagePage(
        thread_id=page.thread.thread_id,
        messages=message_views(page.messages),
        targets=message_views(page.targets),
        last_seq=page.thread.last_seq,
        read_seq=page.read_seq,
        has_more=page.has_more,
    )
