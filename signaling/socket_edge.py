"""The socket.io edge: authenticated connects, schema-checked events and error acks, in one place.

Namespaces subclass EdgeNamespace and register routes: an event name, the Schema its payload must
match, and a handler taking the caller's Principal and the parsed payload. Every ack has the shape
`{"ok": true, "data": ...}` or `{"ok": false, "error": {"code": ..., "message": ...}}`. A bad
payload, an unknown event or a domain error only produces an error ack; nothing else changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import msgspec
import socketio

from careline.signaling.errors import AuthError, SignalingError, UnknownEvent
from careline.signaling.event_tap import EventTap
from careline.signaling.identity import Authenticator, Principal, revocation_keys
from careline.signaling.observer import SignalingObserver
from careline.signaling.schemas import Schema, parse

log = logging.getLogger(__name__)

Handler = Callable[[str, Principal, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    """One inbound event: its payload schema (None: no payload expected) and its handler."""

    schema: type[Schema] | None
    handler: Handler


def ok(data: Any = None) -> dict[str, Any]:
    """A success ack. Structs stay Structs: the socket.io server encodes packets with msgspec."""
    return {"ok": True, "data": data}


def error(exc: SignalingError) -> dict[str, Any]:
    """An error ack carrying the error's stable code."""
    return {"ok": False, "error": {"code": exc.code, "message": exc.message, **exc.details()}}


def bearer_token(auth: Any, environ: Mapping[str, Any]) -> str | None:
    """The token from the connect `auth` payload, the `token` query parameter or the header."""
    if isinstance(auth, Mapping):
        token = auth.get("token")
        if isinstance(token, str) and token:
            return token
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    if query.get("token"):
        return query["token"][0]
    header = str(environ.get("HTTP_AUTHORIZATION", ""))
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


class EdgeNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """A namespace whose connects are authenticated and whose events are routed and checked.

    Concurrency: python-socketio runs each event in its own task, so handlers of one socket may
    interleave; state shared across events must be guarded by the services they call.
    """

    def __init__(
        self,
        namespace: str,
        authenticator: Authenticator,
        observer: SignalingObserver,
        clock: Callable[[], float] = time.time,
        expiry_grace: float = 0.0,
    ) -> None:
        super().__init__(namespace)
        self._grace = expiry_grace
        self._authenticator = authenticator
        self._observer = observer
        self._clock = clock
        self._principals: dict[str, Principal] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self._later: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.routes: dict[str, Route] = {}
        #: Sees every connect, event and disconnect (the session recorder); None: nobody.
        self.event_tap: EventTap | None = None

    def principal(self, sid: str) -> Principal | None:
        """The Principal of a connected socket, if it is still connected."""
        return self._principals.get(sid)

    @property
    def connected_count(self) -> int:
        """How many sockets are connected to this namespace on this node."""
        return len(self._principals)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """Route connect, disconnect and every other event (python-socketio's dispatch hook)."""
        tap = self.event_tap
        if event == "connect":
            sid, environ, auth = (*args, None)[:3]
            await self._connect(sid, environ, auth)
            principal = self._principals.get(sid)
            if tap is not None and principal is not None:
                tap.connected(self.namespace, sid, principal)
            return None
        if event == "disconnect":
            if tap is not None and args[0] in self._principals:
                tap.disconnected(self.namespace, args[0])
            await self._disconnect(args[0])
            return None
        sid, payload = args[0], (args[1] if len(args) > 1 else None)
        reply = await self._dispatch(event, sid, payload)
        if tap is not None:
            tap.handled(self.namespace, sid, event, payload, msgspec.to_builtins(reply))
        return reply

    async def joined(self, sid: str, principal: Principal) -> None:
        """Hook: a socket was authenticated and connected."""

    async def left(self, sid: str, principal: Principal) -> None:
        """Hook: an authenticated socket disconnected."""

    async def _connect(self, sid: str, environ: Mapping[str, Any], auth: Any) -> None:
        try:
            principal = await self._authenticator.authenticate(bearer_token(auth, environ))
        except SignalingError as exc:
            self._observer.refused(self.namespace, exc.code)
            log.info("refused socket %s: %s", sid, exc.code)
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": exc.code}
            ) from None
        self._principals[sid] = principal
        delay = max(0.0, principal.expires_at + self._grace - self._clock())
        self._expiry[sid] = asyncio.get_running_loop().call_later(delay, self._expire, sid)
        self._observer.connected(self.namespace, principal.role.value)
        log.debug("socket %s connected as %s", sid, principal.describe())
        await self.joined(sid, principal)

    def _expire(self, sid: str) -> None:
        """The token of `sid` expired: tell the client, then disconnect it."""
        task = asyncio.get_running_loop().create_task(self._cut_off(sid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cut_off(self, sid: str) -> None:
        if sid not in self._principals:
            return
        notice = error(AuthError("the access token has expired", code="auth.expired"))["error"]
        await self.emit("session.expired", notice, to=sid)
        await self.disconnect(sid)

    async def drop_revoked(self, keys: Collection[str]) -> int:
        """Disconnect sockets whose token any of `keys` revokes; returns how many."""
        wanted = set(keys)
        dropped = 0
        for sid, principal in list(self._principals.items()):
            if wanted.isdisjoint(revocation_keys(principal)):
                continue
            notice = error(AuthError("the access token was revoked", code="auth.revoked"))
            await self.emit("session.revoked", notice["error"], to=sid)
            await self.disconnect(sid)
            dropped += 1
        return dropped

    def disconnect_after_reply(self, sid: str, delay: float = 0.5) -> None:
        """Close `sid` shortly after the ack of the event being handled has gone out."""
        handle = asyncio.get_running_loop().call_later(delay, self._close_later, sid)
        self._later[sid] = handle

    def _close_later(self, sid: str) -> None:
        self._later.pop(sid, None)
        task = asyncio.get_running_loop().create_task(self._close_if_connected(sid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_if_connected(self, sid: str) -> None:
        if sid in self._principals:
            await self.disconnect(sid)

    async def close(self) -> None:
        """Cancel expiry timers and pending cut-offs (at shutdown); safe to call twice."""
        for handle in [*self._expiry.values(), *self._later.values()]:
            handle.cancel()
        self._expiry.clear()
        self._later.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _disconnect(self, sid: str) -> None:
        handle = self._expiry.pop(sid, None)
        if handle is not None:
            handle.cancel()
        principal = self._principals.pop(sid, None)
        if principal is None:
            return
        self._observer.disconnected(self.namespace, principal.role.value)
        try:
            await self.left(sid, principal)
        except SignalingError as exc:  # e.g. the store is away; the sweeps repair it later
            log.warning("%s: disconnect not fully handled: %s", self.namespace, exc.code)

    async def _dispatch(self, event: str, sid: str, payload: Any) -> dict[str, Any]:
        principal = self._principals.get(sid)
        try:
            if principal is None:
                raise AuthError("the socket is not authenticated", code="auth.missing")
            if principal.expires_at + self._grace <= self._clock():
                raise AuthError("the access token has expired", code="auth.expired")
            route = self.routes.get(event)
            if route is None:
                raise UnknownEvent(f"unknown event {event!r}"[:200])
            args = parse(route.schema, payload) if route.schema is not None else None
            result = ok(await route.handler(sid, principal, args))
        except SignalingError as exc:
            self._observer.handled(_label(event, self.routes), exc.code)
            return error(exc)
        except Exception:
            log.exception("event %s from socket %s failed", _label(event, self.routes), sid)
            self._observer.handled(_label(event, self.routes), "internal")
            return error(SignalingError("internal error", code="internal"))
        self._observer.handled(event, "ok")
        return result


def _label(event: str, routes: Mapping[str, Route]) -> str:
    """A metrics-safe event label: unknown names collapse so clients cannot grow label sets."""
    return event if event in routes else "unknown"
