"""Pharmacist presence: states, the stored record and checked transitions.

Pure values and functions, no I/O. A pharmacist is offline until their console connects (then
away: present, not taking calls), available when ready, ringing while a call is offered to them,
busy on a call, and in wrap_up after it until `wrap_until` passes (or they say they are ready).
Letting a call ring out sets them away (auto-pause) until they come back.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass

from careline.signaling.errors import Conflict


class PresenceState(enum.StrEnum):
    """Where a pharmacist stands (bounded: safe as a metric label)."""

    OFFLINE = "offline"
    AWAY = "away"
    AVAILABLE = "available"
    RINGING = "ringing"
    BUSY = "busy"
    WRAP_UP = "wrap_up"


_P = PresenceState
#: Legal moves. Every state may go offline (the console disconnected).
PRESENCE_TRANSITIONS: Mapping[PresenceState, frozenset[PresenceState]] = {
    _P.OFFLINE: frozenset({_P.AWAY}),
    _P.AWAY: frozenset({_P.AVAILABLE, _P.OFFLINE}),
    _P.AVAILABLE: frozenset({_P.RINGING, _P.AWAY, _P.OFFLINE}),
    _P.RINGING: frozenset({_P.BUSY, _P.AVAILABLE, _P.AWAY, _P.OFFLINE}),
    _P.BUSY: frozenset({_P.WRAP_UP, _P.OFFLINE}),
    _P.WRAP_UP: frozenset({_P.AVAILABLE, _P.AWAY, _P.OFFLINE}),
}
#: States a pharmacist may ask for themselves (`hotline.presence`).
CHOSEN_STATES = frozenset({_P.AVAILABLE, _P.AWAY})
#: States that count as staffed (on shift) for the estimated wait.
STAFFED_STATES = frozenset({_P.AVAILABLE, _P.RINGING, _P.BUSY, _P.WRAP_UP})


@dataclass(frozen=True, slots=True)
class Presence:
    """A pharmacist's presence, by opaque subject id.

    `node` is the server process holding their console's socket. `idle_since` orders available
    pharmacists (the longest idle is offered the next call). `call_id` is the call they are
    ringing for, on, or wrapping up; `wrap_until` ends wrap-up; `reason` says why they are away.
    """

    sub: str
    state: PresenceState
    version: int
    node: str
    skills: tuple[str, ...]
    since: float
    idle_since: float
    call_id: str | None = None
    wrap_until: float | None = None
    reason: str | None = None


def check_presence_transition(current: PresenceState, target: PresenceState) -> None:
    """Raise Conflict (hotline.bad_transition) unless presence may move current -> target."""
    if target not in PRESENCE_TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in PRESENCE_TRANSITIONS[current])) or "nothing"
        raise Conflict(
            f"presence cannot become {target.value}: expected one of {allowed}, "
            f"got {current.value}",
            code="hotline.bad_transition",
        )


def move_presence(
    presence: Presence,
    target: PresenceState,
    now: float,
    *,
    call_id: str | None = None,
    wrap_until: float | None = None,
    reason: str | None = None,
    keep_idle: bool = False,
) -> Presence:
    """`presence` in `target`, one version later; Conflict if the move is illegal.

    Becoming available starts a new idle period unless `keep_idle` (a ring that came to nothing
    through no fault of theirs keeps their place among the longest idle).
    """
    check_presence_transition(presence.state, target)
    idle = presence.idle_since
    if target is PresenceState.AVAILABLE and not keep_idle:
        idle = now
    return dataclasses.replace(
        presence,
        state=target,
        version=presence.version + 1,
        since=now,
        idle_since=idle,
        call_id=call_id,
        wrap_until=wrap_until,
        reason=reason,
    )


def come_online(
    existing: Presence | None, sub: str, node: str, skills: tuple[str, ...], now: float
) -> Presence:
    """The presence of a pharmacist whose console (re)connected on `node`.

    A pharmacist who was offline becomes away; one already present (a second console, or the
    first on another node) keeps their state and moves to `node`.
    """
    if existing is None:
        return Presence(
            sub=sub,
            state=PresenceState.AWAY,
            version=1,
            node=node,
            skills=skills,
            since=now,
            idle_since=now,
        )
    if existing.state is PresenceState.OFFLINE:
        moved = move_presence(existing, PresenceState.AWAY, now)
        return dataclasses.replace(moved, node=node, skills=skills)
    return dataclasses.replace(existing, version=existing.version + 1, node=node, skills=skills)


def wrap_up_over(presence: Presence, now: float) -> bool:
    """True when the pharmacist's wrap-up time has passed."""
    return (
        presence.state is PresenceState.WRAP_UP
        and presence.wrap_until is not None
        and presence.wrap_until <= now
    )
