"""The hotline's atomic moves: each turns the current call and presence into a HotlineChange.

Pure functions, no I/O. The service reads the records, asks a move for the change and stores it
with `HotlineStore.apply` (compare-and-set on versions), retrying on `hotline.stale`. A move that
no longer applies (the call moved on meanwhile) returns None; a request that is not allowed
raises the error the client sees.
"""

from __future__ import annotations

from careline.signaling.errors import Conflict, NotFound
from careline.signaling.hotline_call import (
    WAITING_STATES,
    Call,
    CallState,
    EndReason,
    move_call,
    touch_call,
)
from careline.signaling.hotline_store import HotlineChange
from careline.signaling.presence import Presence, PresenceState, move_presence


def offer(call: Call, pharmacist: Presence, now: float, ring_seconds: float) -> HotlineChange:
    """Ring `pharmacist` for a queued call until now + ring_seconds."""
    if call.state is not CallState.QUEUED or pharmacist.state is not PresenceState.AVAILABLE:
        raise Conflict("the call or the pharmacist moved on", code="hotline.stale")
    ringing = move_call(
        call,
        CallState.RINGING,
        pharmacist=pharmacist.sub,
        offers=call.offers + 1,
        offered_at=call.offered_at if call.offered_at is not None else now,
        ring_deadline=now + ring_seconds,
    )
    rung = move_presence(
        pharmacist, PresenceState.RINGING, now, call_id=call.call_id, keep_idle=True
    )
    return HotlineChange(calls=(ringing,), presences=(rung,))


def accept(
    call: Call | None,
    pharmacist: Presence | None,
    sub: str,
    now: float,
    *,
    kiosk_session: str,
    pharmacist_session: str,
) -> HotlineChange | None:
    """The pharmacist answers the call offered to them (None: they already did)."""
    if call is None:
        raise NotFound("no such call", code="hotline.call_not_found")
    if call.state is CallState.CONNECTED:
        if call.pharmacist == sub:
            return None
        raise Conflict("another pharmacist answered this call", code="hotline.call_taken")
    if not call.is_open:
        raise Conflict(f"the call has ended ({call.state.value})", code="hotline.call_ended")
    if (
        call.state is not CallState.RINGING
        or call.pharmacist != sub
        or pharmacist is None
        or pharmacist.state is not PresenceState.RINGING
        or pharmacist.call_id != call.call_id
    ):
        raise Conflict("this call is not offered to you", code="hotline.not_offered")
    connected = move_call(
        call,
        CallState.CONNECTED,
        accepted_at=now,
        ring_deadline=None,
        kiosk_session=kiosk_session,
        pharmacist_session=pharmacist_session,
    )
    busy = move_presence(pharmacist, PresenceState.BUSY, now, call_id=call.call_id)
    return HotlineChange(calls=(connected,), presences=(busy,))


def requeue(
    call: Call,
    pharmacist: Presence | None,
    now: float,
    pharmacist_to: PresenceState,
    reason: str | None = None,
) -> HotlineChange | None:
    """A ringing call goes back to the head of the queue; its pharmacist to `pharmacist_to`.

    Used for a ring timeout (the pharmacist is set away), a decline (available again) and a
    pharmacist who disconnected while ringing (offline).
    """
    if call.state is not CallState.RINGING:
        return None
    queued = move_call(
        call,
        CallState.QUEUED,
        requeued=True,
        passed_by=call.pharmacist,
        pharmacist=None,
        ring_deadline=None,
        missed_by=call.missed_by if call.pharmacist is None else (*call.missed_by, call.pharmacist),
    )
    presences: tuple[Presence, ...] = ()
    if (
        pharmacist is not None
        and pharmacist.sub == call.pharmacist
        and pharmacist.state is PresenceState.RINGING
        and pharmacist.call_id == call.call_id
    ):
        presences = (move_presence(pharmacist, pharmacist_to, now, reason=reason),)
    return HotlineChange(calls=(queued,), presences=presences)


def end(
    call: Call,
    pharmacist: Presence | None,
    now: float,
    reason: EndReason,
    wrap_up_seconds: float,
    pharmacist_to: PresenceState | None = None,
) -> HotlineChange | None:
    """End a call whatever its state: a waiting call is abandoned (or becomes a callback), a
    connected call completes and its pharmacist goes to wrap-up (or `pharmacist_to`)."""
    if not call.is_open:
        return None
    presences: tuple[Presence, ...] = ()
    mine = (
        pharmacist is not None
        and pharmacist.sub == call.pharmacist
        and pharmacist.call_id == call.call_id
    )
    if call.state in WAITING_STATES:
        target = CallState.CALLBACK if reason is EndReason.CALLBACK else CallState.ABANDONED
        if mine and pharmacist is not None and pharmacist.state is PresenceState.RINGING:
            to = pharmacist_to or PresenceState.AVAILABLE
            presences = (move_presence(pharmacist, to, now, keep_idle=True),)
    else:
        target = CallState.COMPLETED
        if mine and pharmacist is not None and pharmacist.state is PresenceState.BUSY:
            to = pharmacist_to or PresenceState.WRAP_UP
            wrap = now + wrap_up_seconds if to is PresenceState.WRAP_UP else None
            presences = (
                move_presence(
                    pharmacist,
                    to,
                    now,
                    call_id=call.call_id if wrap is not None else None,
                    wrap_until=wrap,
                ),
            )
    ended = move_call(call, target, ended_at=now, end_reason=reason, ring_deadline=None)
    return HotlineChange(calls=(ended,), presences=presences)


def free_orphaned(
    call: Call, pharmacist: Presence | None, now: float, wrap_up_seconds: float
) -> HotlineChange | None:
    """A ringing or connected call whose pharmacist is not ringing for it or on it any more
    (the sweep's ORPHANED): a ringing call goes back to the head of the queue, a connected one
    ends. None when the call is no longer orphaned as the fresh records show: its pharmacist is
    with it, or it moved meanwhile (e.g. the pharmacist's disconnect requeued it, so it is
    queued, and must stay queued)."""
    if (
        pharmacist is not None
        and pharmacist.call_id == call.call_id
        and pharmacist.state in (PresenceState.RINGING, PresenceState.BUSY)
    ):
        return None
    if call.state is CallState.RINGING:
        return requeue(call, None, now, PresenceState.AVAILABLE)
    if call.state is CallState.CONNECTED:
        return end(call, None, now, EndReason.PHARMACIST_DISCONNECTED, wrap_up_seconds)
    return None


def offer_callback(call: Call, now: float) -> HotlineChange | None:
    """Record that the caller, waiting too long, was offered a callback (once per call)."""
    if call.state not in WAITING_STATES or call.callback_offered_at is not None:
        return None
    return HotlineChange(calls=(touch_call(call, callback_offered_at=now),))


def request_callback(
    call: Call, pharmacist: Presence | None, now: float, wrap_up_seconds: float
) -> HotlineChange:
    """The caller takes the callback offer: the call leaves the queue as a callback."""
    if call.state not in WAITING_STATES:
        raise Conflict("the call is no longer waiting", code="hotline.bad_transition")
    if call.callback_offered_at is None:
        raise Conflict("no callback was offered for this call", code="hotline.no_callback_offer")
    change = end(call, pharmacist, now, EndReason.CALLBACK, wrap_up_seconds)
    assert change is not None
    return change


def detach(call: Call, now: float) -> HotlineChange | None:
    """The kiosk's socket went away: its reconnect grace starts (None if already detached)."""
    if not call.is_open or call.detached_at is not None:
        return None
    return HotlineChange(calls=(touch_call(call, detached_at=now),))


def attach(call: Call, node: str) -> HotlineChange:
    """The kiosk is back (on `node`): the grace stops."""
    if not call.is_open:
        raise Conflict(f"the call has ended ({call.state.value})", code="hotline.call_ended")
    return HotlineChange(calls=(touch_call(call, detached_at=None, kiosk_node=node),))


def set_presence(pharmacist: Presence, target: PresenceState, now: float) -> Presence | None:
    """A pharmacist chooses available or away (None: already there)."""
    if pharmacist.state is target:
        return None
    if pharmacist.state in (PresenceState.RINGING, PresenceState.BUSY):
        raise Conflict(
            f"presence cannot become {target.value} while {pharmacist.state.value}: "
            "decline or end the call first",
            code="hotline.bad_transition",
        )
    return move_presence(pharmacist, target, now)
