"""What is due on the hotline at a given time (pure): the timers, as a function of the records.

Every deadline lives in the stored records (a call's ring deadline, a pharmacist's wrap-up end,
a kiosk's reconnect grace), so any node can act on it, including after a restart or when the
node that set it died. The service sweeps every `sweep_seconds`: it asks `due` what to do and
applies each item as an atomic move (which re-checks it against fresh records).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from careline.signaling.hotline_call import WAITING_STATES, Call, CallState
from careline.signaling.presence import Presence, PresenceState, wrap_up_over


class DueKind(enum.StrEnum):
    """Something a timer says must happen now."""

    RING_TIMEOUT = "ring_timeout"  # re-queue at the head, pharmacist away
    WRAP_UP_OVER = "wrap_up_over"  # pharmacist available
    KIOSK_GONE = "kiosk_gone"  # the kiosk's reconnect grace ran out: end the call
    KIOSK_LOST = "kiosk_lost"  # the kiosk's node is gone: start the grace
    PHARMACIST_LOST = "pharmacist_lost"  # the pharmacist's node is gone: offline
    CALLBACK_OFFER = "callback_offer"  # waited too long: offer a callback
    ORPHANED = "orphaned"  # ringing or connected, but its pharmacist is not on it any more
    STRANDED = "stranded"  # a pharmacist ringing or busy for a call that is not theirs any more


@dataclass(frozen=True, slots=True)
class Due:
    """One thing to do: about a call (`call_id`) or a pharmacist (`sub`)."""

    kind: DueKind
    call_id: str | None = None
    sub: str | None = None


@dataclass(frozen=True, slots=True)
class SweepRules:
    """The timer settings the sweep needs."""

    reconnect_grace_seconds: float
    callback_after_seconds: float


def due(
    calls: Sequence[Call],
    presences: Sequence[Presence],
    live_nodes: Collection[str],
    now: float,
    rules: SweepRules,
) -> list[Due]:
    """Everything due at `now`, pharmacists lost first (so their calls are freed first)."""
    found: list[Due] = []
    by_sub = {p.sub: p for p in presences}
    by_id = {c.call_id: c for c in calls}
    for presence in presences:
        if presence.state is not PresenceState.OFFLINE and presence.node not in live_nodes:
            found.append(Due(DueKind.PHARMACIST_LOST, sub=presence.sub))
        elif wrap_up_over(presence, now):
            found.append(Due(DueKind.WRAP_UP_OVER, sub=presence.sub))
        elif stranded(presence, by_id.get(presence.call_id or "")):
            found.append(Due(DueKind.STRANDED, sub=presence.sub))
    for call in calls:
        if not call.is_open:
            continue
        if call.detached_at is None and call.kiosk_node not in live_nodes:
            found.append(Due(DueKind.KIOSK_LOST, call_id=call.call_id))
        elif (
            call.detached_at is not None and call.detached_at + rules.reconnect_grace_seconds <= now
        ):
            found.append(Due(DueKind.KIOSK_GONE, call_id=call.call_id))
            continue
        if (
            call.state is CallState.RINGING
            and call.ring_deadline is not None
            and call.ring_deadline <= now
        ):
            found.append(Due(DueKind.RING_TIMEOUT, call_id=call.call_id))
        elif call.state in (CallState.RINGING, CallState.CONNECTED) and _orphaned(
            call, by_sub.get(call.pharmacist or "")
        ):
            found.append(Due(DueKind.ORPHANED, call_id=call.call_id))
        if (
            call.state in WAITING_STATES
            and call.callback_offered_at is None
            and now - call.enqueued_at >= rules.callback_after_seconds
        ):
            found.append(Due(DueKind.CALLBACK_OFFER, call_id=call.call_id))
    return found


def _orphaned(call: Call, pharmacist: Presence | None) -> bool:
    """A ringing or connected call whose pharmacist is not (any more) ringing for or on it."""
    expected = PresenceState.RINGING if call.state is CallState.RINGING else PresenceState.BUSY
    return (
        pharmacist is None or pharmacist.call_id != call.call_id or pharmacist.state is not expected
    )


def stranded(pharmacist: Presence, call: Call | None) -> bool:
    """A pharmacist ringing or busy for a call that is not (any more) ringing for or with them."""
    if pharmacist.state is PresenceState.RINGING:
        expected = CallState.RINGING
    elif pharmacist.state is PresenceState.BUSY:
        expected = CallState.CONNECTED
    else:
        return False
    return call is None or call.state is not expected or call.pharmacist != pharmacist.sub
