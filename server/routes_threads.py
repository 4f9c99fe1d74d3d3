"""REST for message visits: threads, messages, receipts, attachments, retention (docs/protocol.md).

Handlers parse, call the ThreadService and render its result; every rule lives in the service.
Attachments are uploaded as the raw request body and streamed with their own size limit
(threads.max_attachment_bytes), not server.max_body_bytes.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from careline.server.app_keys import THREADS
from careline.server.http_edge import require_principal
from careline.signaling.audit_view import AuditTrail, audit_event_view
from careline.signaling.errors import InvalidPayload, NotFound
from careline.signaling.schemas import OPAQUE_ID_PATTERN, Schema, parse
from careline.signaling.thread_namespace import message_page, outcome_reply, sent_reply
from careline.signaling.thread_schemas import (
    AssignRequest,
    CreatedThread,
    CreateThreadRequest,
    DeleteRequest,
    EditRequest,
    ReadReply,
    ReadRequest,
    SendRequest,
    ThreadList,
)
from careline.signaling.thread_views import attachment_view, summary_view

routes = web.RouteTableDef()

S = TypeVar("S", bound=Schema)
_OPAQUE = re.compile(OPAQUE_ID_PATTERN)
_CHUNK = 64 * 1024
#: Most audit records one `GET /api/threads/{id}/audit` returns.
_MAX_AUDIT_PAGE = 1000


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value), status=status, content_type="application/json"
    )


def _thread_id(request: web.Request) -> str:
    thread_id = request.match_info["thread_id"]
    if not _OPAQUE.match(thread_id):
        raise NotFound("no such thread", code="thread.not_found")
    return thread_id


async def _body(request: web.Request, schema: type[S], **path: Any) -> S:
    """The JSON body as `schema`, with the path's values added (they may not be in the body)."""
    raw = await request.read()
    try:
        data = msgspec.json.decode(raw) if raw.strip() else {}
    except msgspec.DecodeError:
        raise InvalidPayload("the body is not valid JSON") from None
    if isinstance(data, dict):
        for key in path:
            if key in data:
                raise InvalidPayload(f"`{key}` comes from the path, not the body")
        data.update(path)
    return parse(schema, data)


def _int(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidPayload(f"`{name}` must be an integer") from None
    if not low <= number <= high:
        raise InvalidPayload(f"`{name}` must be between {low} and {high}")
    return number


@routes.post("/api/threads")
async def create_thread(request: web.Request) -> web.Response:
    """A parent opens a thread (idempotent with `client_thread_id`): 201, or 200 if it existed."""
    principal = await require_principal(request)
    body = await _body(request, CreateThreadRequest)
    summary, created = await request.app[THREADS].create(
        principal, body.patient_ref, body.client_thread_id, body.family_sub
    )
    reply = CreatedThread(thread=summary_view(summary), created=created)
    return _json(reply, 201 if created else 200)


@routes.get("/api/threads")
async def list_threads(request: web.Request) -> web.Response:
    """The caller's threads (by role), newest activity first, with unread counts."""
    principal = await require_principal(request)
    states = request.query.getall("state", [])
    allowed = {"open", "assigned", "answered", "closed"}
    if not set(states) <= allowed:
        raise InvalidPayload("`state` must be one of open, assigned, answered, closed")
    before_text = request.query.get("before")
    try:
        before = float(before_text) if before_text else None
    except ValueError:
        raise InvalidPayload("`before` must be a number") from None
    limit = _int(request, "limit", 50, 1, 200)
    assert limit is not None
    found = await request.app[THREADS].list_threads(principal, states, before, limit)
    return _json(ThreadList(threads=[summary_view(s) for s in found]))


@routes.post("/api/threads/purge")
async def purge(request: web.Request) -> web.Response:
    """An admin runs the retention purge now."""
    principal = await require_principal(request)
    result = await request.app[THREADS].purge(principal)
    return _json({"purged_threads": len(result.threads), "purged_attachments": result.attachments})


@routes.get("/api/threads/{thread_id}")
async def get_thread(request: web.Request) -> web.Response:
    """One thread with the caller's read horizon."""
    principal = await require_principal(request)
    return _json(summary_view(await request.app[THREADS].get(principal, _thread_id(request))))


@routes.get("/api/threads/{thread_id}/audit")
async def audit_trail(request: web.Request) -> web.Response:
    """The thread's audit trail (opaque ids only), for admins and the clinicians who see it."""
    principal = await require_principal(request)
    after = _int(request, "after_seq", 0, 0, 2**62)
    limit = _int(request, "limit", 100, 1, 2**31)
    assert after is not None
    assert limit is not None
    events = await request.app[THREADS].audit_trail(
        principal, _thread_id(request), after_seq=after, limit=min(limit, _MAX_AUDIT_PAGE)
    )
    return _json(AuditTrail(events=[audit_event_view(e) for e in events]))


@routes.get("/api/threads/{thread_id}/messages")
async def messages(request: web.Request) -> web.Response:
    """Entries after `after_seq` (default 0), or the last ones before `before_seq`."""
    principal = await require_principal(request)
    big = 2**62
    after = _int(request, "after_seq", None, 0, big)
    before = _int(request, "before_seq", None, 1, big)
    limit = _int(request, "limit", 100, 1, 500)
    assert limit is not None
    page = await request.app[THREADS].messages(
        principal, _thread_id(request), after_seq=after, before_seq=before, limit=limit
    )
    return _json(message_page(page))


@routes.post("/api/threads/{thread_id}/messages")
async def send(request: web.Request) -> web.Response:
    """Send a message: 201 once it is durable, 200 with the original for a retry."""
    principal = await require_principal(request)
    body = await _body(request, SendRequest, thread_id=_thread_id(request))
    appended = await request.app[THREADS].send(
        principal, body.thread_id, body.client_msg_id, body.text, body.attachment_ids
    )
    return _json(sent_reply(appended), 200 if appended.duplicate else 201)


@routes.post("/api/threads/{thread_id}/messages/{seq}/edit")
async def edit(request: web.Request) -> web.Response:
    """Replace the text of one's own message."""
    principal = await require_principal(request)
    body = await _body(
        request, EditRequest, thread_id=_thread_id(request), target_seq=_seq(request)
    )
    appended = await request.app[THREADS].edit(
        principal, body.thread_id, body.client_msg_id, body.target_seq, body.text
    )
    return _json(sent_reply(appended), 200 if appended.duplicate else 201)


@routes.post("/api/threads/{thread_id}/messages/{seq}/delete")
async def delete(request: web.Request) -> web.Response:
    """Delete one's own message."""
    principal = await require_principal(request)
    body = await _body(
        request, DeleteRequest, thread_id=_thread_id(request), target_seq=_seq(request)
    )
    appended = await request.app[THREADS].delete(
        principal, body.thread_id, body.client_msg_id, body.target_seq
    )
    return _json(sent_reply(appended), 200 if appended.duplicate else 201)


@routes.post("/api/threads/{thread_id}/read")
async def read(request: web.Request) -> web.Response:
    """Move the caller's read horizon up."""
    principal = await require_principal(request)
    body = await _body(request, ReadRequest, thread_id=_thread_id(request))
    horizon = await request.app[THREADS].mark_read(principal, body.thread_id, body.seq)
    return _json(ReadReply(thread_id=body.thread_id, read_seq=horizon))


@routes.post("/api/threads/{thread_id}/assign")
async def assign(request: web.Request) -> web.Response:
    """A clinician picks the thread up (an admin names the `assignee`)."""
    principal = await require_principal(request)
    body = await _body(request, AssignRequest, thread_id=_thread_id(request))
    outcome = await request.app[THREADS].assign(principal, body.thread_id, body.assignee)
    return _json(outcome_reply(outcome))


@routes.post("/api/threads/{thread_id}/close")
async def close(request: web.Request) -> web.Response:
    """The assigned clinician or an admin closes the thread."""
    principal = await require_principal(request)
    outcome = await request.app[THREADS].close_thread(principal, _thread_id(request))
    return _json(outcome_reply(outcome))


@routes.post("/api/threads/{thread_id}/reopen")
async def reopen(request: web.Request) -> web.Response:
    """A member reopens a closed thread within the reopen window."""
    principal = await require_principal(request)
    outcome = await request.app[THREADS].reopen(principal, _thread_id(request))
    return _json(outcome_reply(outcome))


@routes.post("/api/threads/{thread_id}/attachments")
async def upload(request: web.Request) -> web.Response:
    """Upload a photo (the raw body); its type is found from its bytes. 201 with its id."""
    principal = await require_principal(request)
    thread_id = _thread_id(request)
    service = request.app[THREADS]
    await service.check_upload(principal, thread_id)
    if request.content_length is not None:
        service.check_attachment_size(request.content_length)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(_CHUNK):
        size += len(chunk)
        service.check_attachment_size(size)
        chunks.append(chunk)
    attachment = await service.upload(principal, thread_id, b"".join(chunks))
    return _json(attachment_view(thread_id, attachment.ref()), 201)


@routes.get("/api/threads/{thread_id}/attachments/{attachment_id}")
async def download(request: web.Request) -> web.Response:
    """An attachment's bytes with the content type found at upload, for the thread's readers."""
    principal = await require_principal(request)
    attachment, data = await request.app[THREADS].download(
        principal, _thread_id(request), request.match_info["attachment_id"]
    )
    return web.Response(
        body=data,
        content_type=attachment.content_type,
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "inline",
            "Content-Security-Policy": "default-src 'none'",
            "Cache-Control": "private, max-age=3600",
        },
    )


def _seq(request: web.Request) -> int:
    try:
        seq = int(request.match_info["seq"])
    except ValueError:
        raise NotFound("no such message", code="thread.message_not_found") from None
    if seq < 1:
        raise NotFound("no such message", code="thread.message_not_found")
    return seq
