"""The video-visit domain rules, without I/O: checked transitions and the derived visit state."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from careline.signaling.errors import Conflict
from careline.signaling.visit import (
    PARTICIPANT_TRANSITIONS,
    VISIT_TRANSITIONS,
    Participant,
    ParticipantKind,
    ParticipantState,
    Visit,
    VisitState,
    check_visit_transition,
    derive_visit_state,
    transition_participant,
)

P = ParticipantState
V = VisitState
K = ParticipantKind

#: The participant state machine as docs/protocol.md documents it (from -> every legal target).
DOCUMENTED_PARTICIPANT_MOVES: dict[str, set[str]] = {
    "invited": {"waiting", "admitted", "removed"},
    "waiting": {"admitted", "denied", "left", "removed"},
    "admitted": {"connected", "reconnecting", "left", "removed"},
    "connected": {"admitted", "reconnecting", "left", "removed"},
    "reconnecting": {"admitted", "connected", "left", "removed"},
    "left": {"waiting", "admitted", "removed"},
    "denied": {"removed"},
    "removed": set(),
}
#: The visit state machine as docs/protocol.md documents it.
DOCUMENTED_VISIT_MOVES: dict[str, set[str]] = {
    "scheduled": {"waiting", "admitted", "ended"},
    "waiting": {"scheduled", "admitted", "ended"},
    "admitted": {"scheduled", "waiting", "in_call", "ended"},
    "in_call": {"scheduled", "waiting", "admitted", "ended"},
    "ended": set(),
}


def visit(state: VisitState = V.SCHEDULED) -> Visit:
    return Visit(
        visit_id="v-1",
        state=state,
        codec="vp8",
        created_by="c-1",
        created_at=100.0,
        ended_at=None,
        version=1,
    )


def person(
    state: ParticipantState, kind: ParticipantKind = K.PARENT, number: int = 1
) -> Participant:
    return Participant(
        visit_id="v-1",
        participant_id=f"p-{kind.value}-{number}",
        sub=f"s-{kind.value}-{number}",
        kind=kind,
        state=state,
        updated_at=100.0,
    )


def test_the_participant_machine_is_the_documented_one() -> None:
    actual = {s.value: {t.value for t in targets} for s, targets in PARTICIPANT_TRANSITIONS.items()}
    assert actual == DOCUMENTED_PARTICIPANT_MOVES


def test_the_visit_machine_is_the_documented_one() -> None:
    actual = {s.value: {t.value for t in targets} for s, targets in VISIT_TRANSITIONS.items()}
    assert actual == DOCUMENTED_VISIT_MOVES


@pytest.mark.parametrize(("current", "target"), list(itertools.product(P, P)))
def test_every_participant_move_is_checked(
    current: ParticipantState, target: ParticipantState
) -> None:
    before = person(current)
    if target is current:
        assert transition_participant(before, target, now=200.0) is before  # a no-op
    elif target.value in DOCUMENTED_PARTICIPANT_MOVES[current.value]:
        after = transition_participant(before, target, now=200.0)
        assert after.state is target
        assert after.updated_at == 200.0
        assert dataclasses.replace(after, state=current, updated_at=100.0) == before
    else:
        with pytest.raises(Conflict) as refused:
            transition_participant(before, target, now=200.0)
        assert refused.value.code == "visit.bad_transition"
        allowed = ", ".join(sorted(DOCUMENTED_PARTICIPANT_MOVES[current.value])) or "nothing"
        assert refused.value.message == (
            f"participant cannot become {target.value}: expected one of {allowed}, "
            f"got {current.value}"
        )


@pytest.mark.parametrize(("current", "target"), list(itertools.product(V, V)))
def test_every_visit_move_is_checked(current: VisitState, target: VisitState) -> None:
    if target is current or target.value in DOCUMENTED_VISIT_MOVES[current.value]:
        check_visit_transition(current, target)
        return
    with pytest.raises(Conflict) as refused:
        check_visit_transition(current, target)
    assert refused.value.code == "visit.bad_transition"
    allowed = ", ".join(sorted(DOCUMENTED_VISIT_MOVES[current.value])) or "nothing"
    assert refused.value.message == (
        f"visit cannot become {target.value}: expected one of {allowed}, got {current.value}"
    )


def test_an_ended_visit_never_changes_again() -> None:
    for target in (V.SCHEDULED, V.WAITING, V.ADMITTED, V.IN_CALL):
        with pytest.raises(Conflict, match="got ended"):
            check_visit_transition(V.ENDED, target)
    check_visit_transition(V.ENDED, V.ENDED)  # ending twice is not a move


def test_a_removed_participant_never_comes_back() -> None:
    for target in P:
        if target is not P.REMOVED:
            with pytest.raises(Conflict, match="expected one of nothing, got removed"):
                transition_participant(person(P.REMOVED), target, now=1.0)


CLINICIAN_LIVE = person(P.CONNECTED, K.CLINICIAN)


@pytest.mark.parametrize(
    ("participants", "expected"),
    [
        ([], V.SCHEDULED),
        ([person(P.INVITED, K.CLINICIAN), person(P.INVITED)], V.SCHEDULED),
        ([CLINICIAN_LIVE], V.SCHEDULED),  # a clinician alone is not a call
        ([CLINICIAN_LIVE, person(P.CONNECTED, K.CLINICIAN, 2)], V.SCHEDULED),
        ([CLINICIAN_LIVE, person(P.WAITING)], V.WAITING),
        ([person(P.WAITING)], V.WAITING),
        ([person(P.WAITING), person(P.ADMITTED, K.INTERPRETER)], V.ADMITTED),
        ([CLINICIAN_LIVE, person(P.ADMITTED)], V.ADMITTED),
        ([CLINICIAN_LIVE, person(P.RECONNECTING)], V.ADMITTED),  # kept through the grace
        ([person(P.ADMITTED, K.CLINICIAN), person(P.CONNECTED)], V.ADMITTED),
        ([person(P.RECONNECTING, K.CLINICIAN), person(P.CONNECTED)], V.ADMITTED),
        ([CLINICIAN_LIVE, person(P.CONNECTED)], V.IN_CALL),
        ([CLINICIAN_LIVE, person(P.CONNECTED, K.SECOND_PARENT)], V.IN_CALL),
        ([CLINICIAN_LIVE, person(P.WAITING), person(P.CONNECTED, K.INTERPRETER)], V.IN_CALL),
        ([CLINICIAN_LIVE, person(P.LEFT), person(P.DENIED, K.SECOND_PARENT)], V.SCHEDULED),
        ([CLINICIAN_LIVE, person(P.REMOVED)], V.SCHEDULED),
    ],
)
def test_the_visit_state_follows_its_participants(
    participants: list[Participant], expected: VisitState
) -> None:
    for state in (V.SCHEDULED, V.WAITING, V.ADMITTED, V.IN_CALL):
        assert derive_visit_state(visit(state), participants) is expected


def test_an_ended_visit_stays_ended_whoever_is_there() -> None:
    assert derive_visit_state(visit(V.ENDED), [CLINICIAN_LIVE, person(P.CONNECTED)]) is V.ENDED


def test_no_single_participant_move_derives_an_illegal_visit_move() -> None:
    """Explore every reachable roster of a clinician and two family members, one move at a time.

    The service re-derives the visit state after each participant move and checks that visit
    move too: it must never be refused, or a legal admit/leave would fail with a conflict.
    """
    kinds = (K.CLINICIAN, K.PARENT, K.INTERPRETER)
    # Clinicians skip the waiting room and are never admitted or denied.
    clinician_never = {P.WAITING, P.DENIED}
    start = (P.INVITED,) * len(kinds)
    seen = {start}
    frontier = [start]
    while frontier:
        states = frontier.pop()
        roster = [person(s, k) for s, k in zip(states, kinds, strict=True)]
        before = derive_visit_state(visit(), roster)
        for index, participant in enumerate(roster):
            for target in PARTICIPANT_TRANSITIONS[participant.state]:
                if participant.kind is K.CLINICIAN and target in clinician_never:
                    continue
                moved = [*roster]
                moved[index] = transition_participant(participant, target, now=1.0)
                after = derive_visit_state(visit(before), moved)
                check_visit_transition(before, after)  # never raises
                key = tuple(p.state for p in moved)
                if key not in seen:
                    seen.add(key)
                    frontier.append(key)
    assert len(seen) > 100  # the exploration really covered the machine
