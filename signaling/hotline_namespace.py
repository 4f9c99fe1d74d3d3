"""The /hotline socket.io namespace: thin routing of kiosk and pharmacist events to the service.

Only kiosks (registered and enabled) and pharmacists may connect; anyone else is refused at
connect with `hotline.forbidden`, a disabled kiosk with `hotline.kiosk_disabled`. A connect
whose auth payload has `media_only: true` opens a media-only socket (`media.*` events only, no
presence, replaces nothing): the side of a call whose media lives on another node uses one there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from careline.signaling.hotline_schemas import (
    CallIdRequest,
    CallReply,
    CallView,
    PlaceCallRequest,
    PresenceRequest,
    PresenceView,
)
from careline.signaling.hotline_service import HotlineService
from careline.signaling.hotline_views import presence_view
from careline.signaling.identity import Authenticator, Principal
from careline.signaling.observer import SignalingObserver
from careline.signaling.socket_edge import EdgeNamespace, Route
from careline.signaling.visit_namespace import offer_reply
from careline.signaling.visit_schemas import AnswerRequest, OfferReply

NAMESPACE = "/hotline"


class HotlineAuthenticator:
    """The deployment's Authenticator plus the hotline's own admission (roles, kiosk registry)."""

    def __init__(self, inner: Authenticator, service: HotlineService) -> None:
        self._inner = inner
        self._service = service

    async def authenticate(self, token: str | None) -> Principal:
        """The token's Principal, if it may use the hotline (else a coded error)."""
        principal = await self._inner.authenticate(token)
        await self._service.admit(principal)
        return principal


class HotlineNamespace(EdgeNamespace):
    """Parse -> HotlineService -> reply. Also the service's HotlineChannel to clients."""

    def __init__(
        self,
        service: HotlineService,
        authenticator: Authenticator,
        observer: SignalingObserver,
        clock: Callable[[], float] = time.time,
        expiry_grace: float = 0.0,
    ) -> None:
        super().__init__(
            NAMESPACE, HotlineAuthenticator(authenticator, service), observer, clock, expiry_grace
        )
        self._service = service
        self._media_only: set[str] = set()
        service.bind(self)
        self.routes.update(
            {
                "hotline.call": Route(PlaceCallRequest, self._call),
                "hotline.resume": Route(None, self._resume),
                "hotline.callback": Route(None, self._callback),
                "hotline.presence": Route(PresenceRequest, self._presence),
                "hotline.accept": Route(CallIdRequest, self._accept),
                "hotline.decline": Route(CallIdRequest, self._decline),
                "hotline.end": Route(None, self._end),
                "media.start": Route(None, self._start_media),
                "media.restart": Route(None, self._start_media),
                "media.answer": Route(AnswerRequest, self._answer),
            }
        )

    async def emit(self, event: str, data: Any = None, to: str | None = None, **kw: Any) -> None:
        """Send to a socket id or room of this namespace (HotlineChannel). Views stay Structs:
        the server encodes them with msgspec."""
        await super().emit(event, data, to=to, **kw)

    async def enter_room(self, sid: str, room: str) -> None:
        """Add a socket to a room of this namespace (HotlineChannel)."""
        await super().enter_room(sid, room)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """Note a connect's `media_only` flag (its auth payload) before the edge admits it."""
        if event != "connect":
            return await super().trigger_event(event, *args)
        sid, auth = args[0], (args[2] if len(args) > 2 else None)
        if isinstance(auth, Mapping) and auth.get("media_only") is True:
            self._media_only.add(sid)
        try:
            return await super().trigger_event(event, *args)
        finally:
            if self.principal(sid) is None:  # refused
                self._media_only.discard(sid)

    async def joined(self, sid: str, principal: Principal) -> None:
        """A kiosk or pharmacist connected (a full or a media-only socket)."""
        if sid in self._media_only:
            self._service.media_connected(sid, principal)
        else:
            await self._service.connected(sid, principal)

    async def left(self, sid: str, principal: Principal) -> None:
        """A socket went away."""
        self._media_only.discard(sid)
        await self._service.disconnected(sid)

    async def _call(self, sid: str, principal: Principal, request: PlaceCallRequest) -> CallReply:
        call = await self._service.place_call(principal, sid, request.order_token)
        return CallReply(call=call, ice_servers=self._service.ice_servers(principal.sub))

    async def _resume(self, sid: str, principal: Principal, _: None) -> CallReply | None:
        call = await self._service.current_call(principal, sid)
        if call is None:
            return None
        return CallReply(call=call, ice_servers=self._service.ice_servers(principal.sub))

    async def _callback(self, sid: str, principal: Principal, _: None) -> CallView:
        return await self._service.take_callback(principal, sid)

    async def _presence(
        self, sid: str, principal: Principal, request: PresenceRequest
    ) -> PresenceView:
        return presence_view(await self._service.choose_presence(principal, sid, request.state))

    async def _accept(self, sid: str, principal: Principal, request: CallIdRequest) -> CallReply:
        call = await self._service.accept(principal, sid, request.call_id)
        return CallReply(call=call, ice_servers=self._service.ice_servers(principal.sub))

    async def _decline(self, sid: str, principal: Principal, request: CallIdRequest) -> CallView:
        return await self._service.decline(principal, sid, request.call_id)

    async def _end(self, sid: str, principal: Principal, _: None) -> CallView:
        return await self._service.hang_up(principal, sid)

    async def _start_media(self, sid: str, principal: Principal, _: None) -> OfferReply:
        return offer_reply(await self._service.start_media(principal, sid))

    async def _answer(self, sid: str, principal: Principal, request: AnswerRequest) -> None:
        await self._service.answer_media(principal, sid, request.sdp)
