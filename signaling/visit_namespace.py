"""The /visit socket.io namespace: thin routing of visit and media events to the VisitService."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from careline.signaling.identity import Authenticator, Principal
from careline.signaling.media_gateway import MediaOffer, MediaStats
from careline.signaling.observer import SignalingObserver
from careline.signaling.socket_edge import EdgeNamespace, Route
from careline.signaling.visit import Participant, Visit
from careline.signaling.visit_schemas import (
    AnswerRequest,
    JoinReply,
    JoinRequest,
    OfferReply,
    ParticipantRequest,
    ParticipantView,
    TrackView,
    VisitView,
)
from careline.signaling.visit_service import VisitService

NAMESPACE = "/visit"


class VisitNamespace(EdgeNamespace):
    """Parse -> VisitService -> reply. Also the service's VisitChannel to clients."""

    def __init__(
        self,
        service: VisitService,
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
                "visit.join": Route(JoinRequest, self._join),
                "visit.admit": Route(ParticipantRequest, self._admit),
                "visit.deny": Route(ParticipantRequest, self._deny),
                "visit.remove": Route(ParticipantRequest, self._remove),
                "visit.end": Route(None, self._end),
                "visit.stats": Route(None, self._stats),
                "media.start": Route(None, self._start_media),
                "media.restart": Route(None, self._start_media),
                "media.answer": Route(AnswerRequest, self._answer),
            }
        )

    async def emit(self, event: str, data: Any = None, to: str | None = None, **kw: Any) -> None:
        """Send to a socket id or room of this namespace (VisitChannel)."""
        await super().emit(event, data, to=to, **kw)

    async def left(self, sid: str, principal: Principal) -> None:
        """A socket went away: the service starts the participant's grace window."""
        await self._service.disconnected(sid)

    async def _join(self, sid: str, principal: Principal, request: JoinRequest) -> JoinReply:
        result = await self._service.join(principal, sid, request.visit_id)
        return JoinReply(
            participant_id=result.participant.participant_id,
            state=result.participant.state.value,
            visit=visit_view(result.visit, result.roster),
            ice_servers=list(result.ice_servers),
        )

    async def _admit(self, sid: str, principal: Principal, request: ParticipantRequest) -> Any:
        return participant_view(await self._service.admit(principal, sid, request.participant_id))

    async def _deny(self, sid: str, principal: Principal, request: ParticipantRequest) -> Any:
        return participant_view(await self._service.deny(principal, sid, request.participant_id))

    async def _remove(self, sid: str, principal: Principal, request: ParticipantRequest) -> Any:
        return participant_view(await self._service.remove(principal, sid, request.participant_id))

    async def _end(self, sid: str, principal: Principal, _: None) -> dict[str, str]:
        visit = await self._service.end(principal, sid)
        return {"visit_id": visit.visit_id, "state": visit.state.value}

    async def _stats(self, sid: str, principal: Principal, _: None) -> dict[str, MediaStats]:
        return await self._service.stats(principal, sid)

    async def _start_media(self, sid: str, principal: Principal, _: None) -> OfferReply:
        return offer_reply(await self._service.start_media(principal, sid))

    async def _answer(self, sid: str, principal: Principal, request: AnswerRequest) -> None:
        await self._service.answer_media(principal, sid, request.sdp)


def participant_view(participant: Participant) -> ParticipantView:
    """The client view of a participant."""
    return ParticipantView(
        participant_id=participant.participant_id,
        kind=participant.kind.value,
        state=participant.state.value,
    )


def visit_view(
    visit: Visit, participants: tuple[Participant, ...] | list[Participant]
) -> VisitView:
    """The client view of a visit."""
    return VisitView(
        visit_id=visit.visit_id,
        state=visit.state.value,
        codec=visit.codec,
        created_at=visit.created_at,
        ended_at=visit.ended_at,
        participants=[participant_view(p) for p in participants],
    )


def offer_reply(offer: MediaOffer) -> OfferReply:
    """The client view of a media offer."""
    return OfferReply(
        sdp=offer.sdp,
        tracks=[TrackView(mid=t.mid, publisher=t.publisher, kind=t.kind) for t in offer.tracks],
        publish=dict(offer.publish),
    )
