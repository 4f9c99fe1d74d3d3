"""Client views of hotline records: what a kiosk or a pharmacist is shown (opaque ids only)."""

from __future__ import annotations

from careline.signaling.hotline_call import Call
from careline.signaling.hotline_schemas import CallView, KioskView, PresenceView
from careline.signaling.kiosk import Kiosk
from careline.signaling.presence import Presence


def call_view(
    call: Call,
    *,
    as_kiosk: bool,
    position: int | None = None,
    estimated_wait: float | None = None,
) -> CallView:
    """The call as its kiosk (`as_kiosk`) or a pharmacist sees it.

    Each side gets its own media session id and the other side's, so it can tell the peer's
    tracks (their `publisher`) from anything else.
    """
    own, peer = (
        (call.kiosk_session, call.pharmacist_session)
        if as_kiosk
        else (call.pharmacist_session, call.kiosk_session)
    )
    return CallView(
        call_id=call.call_id,
        state=call.state.value,
        order_id=call.order_id,
        kiosk_id=call.kiosk_id,
        skills=list(call.skills),
        enqueued_at=call.enqueued_at,
        offered_at=call.offered_at,
        accepted_at=call.accepted_at,
        ended_at=call.ended_at,
        end_reason=None if call.end_reason is None else call.end_reason.value,
        pharmacist=call.pharmacist,
        kiosk_connected=call.detached_at is None,
        callback_offered=call.callback_offered_at is not None,
        ring_deadline=call.ring_deadline,
        position=position,
        estimated_wait_seconds=estimated_wait,
        session_id=own,
        peer_session_id=peer,
    )


def presence_view(presence: Presence) -> PresenceView:
    """A pharmacist's presence as their console shows it."""
    return PresenceView(
        sub=presence.sub,
        state=presence.state.value,
        since=presence.since,
        skills=list(presence.skills),
        call_id=presence.call_id,
        wrap_until=presence.wrap_until,
        reason=presence.reason,
    )


def kiosk_view(kiosk: Kiosk) -> KioskView:
    """A registered kiosk, without its secret."""
    return KioskView(
        kiosk_id=kiosk.kiosk_id,
        site=kiosk.site,
        skills=list(kiosk.skills),
        created_at=kiosk.created_at,
        enabled=kiosk.enabled,
        disabled_at=kiosk.disabled_at,
    )
