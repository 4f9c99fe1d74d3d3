"""The video visit domain: visit and participant states, their checked transitions, the rules.

Pure values and functions, no I/O: the VisitService applies them and the VisitStore keeps them.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from careline.signaling.errors import Conflict


class VisitState(enum.StrEnum):
    """scheduled -> waiting -> admitted -> in_call -> ended (in_call falls back to admitted)."""

    SCHEDULED = "scheduled"
    WAITING = "waiting"
    ADMITTED = "admitted"
    IN_CALL = "in_call"
    ENDED = "ended"


class ParticipantKind(enum.StrEnum):
    """What a participant is to the visit; clinicians skip the waiting room."""

    CLINICIAN = "clinician"
    PARENT = "parent"
    SECOND_PARENT = "second_parent"
    INTERPRETER = "interpreter"


class ParticipantState(enum.StrEnum):
    """Where a participant stands in the visit."""

    INVITED = "invited"
    WAITING = "waiting"
    ADMITTED = "admitted"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    LEFT = "left"
    DENIED = "denied"
    REMOVED = "removed"


_P = ParticipantState
#: Legal participant moves. Removal is possible from every state but removed itself.
PARTICIPANT_TRANSITIONS: Mapping[ParticipantState, frozenset[ParticipantState]] = {
    _P.INVITED: frozenset({_P.WAITING, _P.ADMITTED, _P.REMOVED}),
    _P.WAITING: frozenset({_P.ADMITTED, _P.DENIED, _P.LEFT, _P.REMOVED}),
    _P.ADMITTED: frozenset({_P.CONNECTED, _P.RECONNECTING, _P.LEFT, _P.REMOVED}),
    _P.CONNECTED: frozenset({_P.RECONNECTING, _P.LEFT, _P.REMOVED, _P.ADMITTED}),
    _P.RECONNECTING: frozenset({_P.ADMITTED, _P.CONNECTED, _P.LEFT, _P.REMOVED}),
    _P.LEFT: frozenset({_P.WAITING, _P.ADMITTED, _P.REMOVED}),
    _P.DENIED: frozenset({_P.REMOVED}),
    _P.REMOVED: frozenset(),
}

_V = VisitState
#: Legal visit moves: forward as people check in, are admitted and connect; back as they leave.
#: Any visit that has not ended may end; an ended visit never changes again.
VISIT_TRANSITIONS: Mapping[VisitState, frozenset[VisitState]] = {
    _V.SCHEDULED: frozenset({_V.WAITING, _V.ADMITTED, _V.ENDED}),
    _V.WAITING: frozenset({_V.SCHEDULED, _V.ADMITTED, _V.ENDED}),
    _V.ADMITTED: frozenset({_V.SCHEDULED, _V.WAITING, _V.IN_CALL, _V.ENDED}),
    _V.IN_CALL: frozenset({_V.SCHEDULED, _V.WAITING, _V.ADMITTED, _V.ENDED}),
    _V.ENDED: frozenset(),
}

#: States in which a participant is present and admitted (may have media).
PRESENT = frozenset({_P.ADMITTED, _P.CONNECTED, _P.RECONNECTING})


@dataclass(frozen=True, slots=True)
class Visit:
    """A video visit. `version` increases with every stored change (optimistic concurrency)."""

    visit_id: str
    state: VisitState
    codec: str
    created_by: str
    created_at: float
    ended_at: float | None
    version: int


@dataclass(frozen=True, slots=True)
class Participant:
    """An invitee of a visit, by opaque ids only."""

    visit_id: str
    participant_id: str
    sub: str
    kind: ParticipantKind
    state: ParticipantState
    updated_at: float
    grace_until: float | None = None


def check_visit_transition(current: VisitState, target: VisitState) -> None:
    """Raise Conflict unless a visit may move from `current` to `target`."""
    if target is not current and target not in VISIT_TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in VISIT_TRANSITIONS[current])) or "nothing"
        raise Conflict(
            f"visit cannot become {target.value}: expected one of {allowed}, got {current.value}",
            code="visit.bad_transition",
        )


def transition_participant(
    participant: Participant, target: ParticipantState, now: float
) -> Participant:
    """The participant moved to `target` (the same object if already there); Conflict if illegal."""
    current = participant.state
    if target is current:
        return participant
    if target not in PARTICIPANT_TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in PARTICIPANT_TRANSITIONS[current])) or "nothing"
        raise Conflict(
            f"participant cannot become {target.value}: expected one of {allowed}, "
            f"got {current.value}",
            code="visit.bad_transition",
        )
    return dataclasses.replace(participant, state=target, updated_at=now)


def derive_visit_state(visit: Visit, participants: Sequence[Participant]) -> VisitState:
    """The visit state implied by its participants (an ended visit stays ended).

    in_call: a clinician and another participant both have media; admitted: someone besides a
    clinician is admitted; waiting: a family member waits; otherwise scheduled.
    """
    if visit.state is VisitState.ENDED:
        return VisitState.ENDED
    family = [p for p in participants if p.kind is not ParticipantKind.CLINICIAN]
    clinician_live = any(
        p.kind is ParticipantKind.CLINICIAN and p.state is _P.CONNECTED for p in participants
    )
    if clinician_live and any(p.state is _P.CONNECTED for p in family):
        state = VisitState.IN_CALL
    elif any(p.state in PRESENT for p in family):
        state = VisitState.ADMITTED
    elif any(p.state is _P.WAITING for p in family):
        state = VisitState.WAITING
    else:
        state = VisitState.SCHEDULED
    return state
