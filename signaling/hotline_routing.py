"""Hotline routing: which waiting call goes to which available pharmacist (pure).

The longest-waiting call (re-queued calls first) goes to the longest-idle available pharmacist
who has every skill the call asks for. A call that has waited `fallback_seconds` or more may go
to any available pharmacist. A call nobody can take yet does not hold up the calls behind it. A
pharmacist who just let the call pass (ring timeout, decline) gets it again only when nobody
else can take it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from careline.signaling.hotline_call import Call, CallState
from careline.signaling.presence import Presence, PresenceState


@dataclass(frozen=True, slots=True)
class Assignment:
    """Offer `call` to `pharmacist` (each appears in at most one assignment of a round)."""

    call: Call
    pharmacist: Presence


def queue_order(calls: Sequence[Call]) -> list[Call]:
    """The queued calls, head first."""
    return sorted((c for c in calls if c.state is CallState.QUEUED), key=Call.queue_key)


def can_serve(pharmacist: Presence, call: Call, now: float, fallback_seconds: float) -> bool:
    """Whether the pharmacist may be offered the call (skills, or the fallback after a wait)."""
    if set(call.skills) <= set(pharmacist.skills):
        return True
    return now - call.enqueued_at >= fallback_seconds


def route(
    calls: Sequence[Call],
    pharmacists: Sequence[Presence],
    now: float,
    fallback_seconds: float,
) -> list[Assignment]:
    """Offers for one routing round: each queued call, head first, to the longest-idle match."""
    free = sorted(
        (p for p in pharmacists if p.state is PresenceState.AVAILABLE),
        key=lambda p: (p.idle_since, p.sub),
    )
    assignments: list[Assignment] = []
    for call in queue_order(calls):
        if not free:
            break
        eligible = [p for p in free if can_serve(p, call, now, fallback_seconds)]
        if not eligible:
            continue
        chosen = next((p for p in eligible if p.sub != call.passed_by), eligible[0])
        free.remove(chosen)
        assignments.append(Assignment(call=call, pharmacist=chosen))
    return assignments


def queue_position(calls: Sequence[Call], call_id: str) -> int | None:
    """1-based position of a queued call in the queue, or None if it is not queued."""
    for position, call in enumerate(queue_order(calls), start=1):
        if call.call_id == call_id:
            return position
    return None
