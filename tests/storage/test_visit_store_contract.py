"""Contract of signaling.visit_store (VisitStore), run against every backend (SQLite, Redis)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

import pytest

from careline.signaling.errors import Conflict, NotFound
from careline.signaling.stores import Storage
from careline.signaling.visit import (
    Participant,
    ParticipantKind,
    ParticipantState,
    Visit,
    VisitState,
)

_ids = itertools.count(1)


def new_visit(visit_id: str | None = None, codec: str = "vp8") -> Visit:
    return Visit(
        visit_id=visit_id or f"v-{next(_ids)}",
        state=VisitState.SCHEDULED,
        codec=codec,
        created_by="c-1",
        created_at=1_700_000_000.25,
        ended_at=None,
        version=1,
    )


def invitee(
    visit: Visit,
    number: int,
    kind: ParticipantKind = ParticipantKind.PARENT,
    state: ParticipantState = ParticipantState.INVITED,
    grace_until: float | None = None,
) -> Participant:
    return Participant(
        visit_id=visit.visit_id,
        participant_id=f"p-{number}",
        sub=f"s-{number}",
        kind=kind,
        state=state,
        updated_at=1_700_000_000.5 + number,
        grace_until=grace_until,
    )


def roster(visit: Visit, size: int = 3) -> list[Participant]:
    kinds = [ParticipantKind.CLINICIAN, ParticipantKind.PARENT, ParticipantKind.INTERPRETER]
    return [invitee(visit, i, kinds[i % len(kinds)]) for i in range(size)]


async def test_create_then_get_round_trips_every_field(storage: Storage) -> None:
    visit = new_visit(codec="h264")
    people = roster(visit)
    await storage.visits.create(visit, people)
    assert await storage.visits.get(visit.visit_id) == visit
    assert list(await storage.visits.participants(visit.visit_id)) == people


async def test_participants_round_trip_every_state_kind_and_grace(storage: Storage) -> None:
    visit = new_visit()
    await storage.visits.create(visit, [])
    combos = list(itertools.product(ParticipantKind, ParticipantState))
    stored = []
    for number, (kind, state) in enumerate(combos):
        grace = None if number % 2 else 1_700_000_060.75 + number
        participant = invitee(visit, number, kind, state, grace_until=grace)
        await storage.visits.upsert_participant(participant)
        stored.append(participant)
    assert list(await storage.visits.participants(visit.visit_id)) == stored  # in order


async def test_a_participant_update_keeps_its_place(storage: Storage) -> None:
    visit = new_visit()
    first, second, third = roster(visit)
    await storage.visits.create(visit, [first, second, third])
    moved = dataclasses.replace(
        second, state=ParticipantState.RECONNECTING, updated_at=1_700_000_100.0, grace_until=9e9
    )
    await storage.visits.upsert_participant(moved)
    back = dataclasses.replace(moved, state=ParticipantState.CONNECTED, grace_until=None)
    await storage.visits.upsert_participant(back)
    assert list(await storage.visits.participants(visit.visit_id)) == [first, back, third]


async def test_a_new_participant_goes_last(storage: Storage) -> None:
    visit = new_visit()
    people = roster(visit)
    await storage.visits.create(visit, people)
    late = invitee(visit, 9, ParticipantKind.SECOND_PARENT, ParticipantState.WAITING)
    await storage.visits.upsert_participant(late)
    assert list(await storage.visits.participants(visit.visit_id)) == [*people, late]


async def test_creating_an_existing_id_is_a_conflict_and_changes_nothing(storage: Storage) -> None:
    visit = new_visit()
    people = roster(visit, 2)
    await storage.visits.create(visit, people)
    again = dataclasses.replace(visit, codec="h264", created_by="c-2")
    with pytest.raises(Conflict):
        await storage.visits.create(again, roster(again, 3))
    assert await storage.visits.get(visit.visit_id) == visit
    assert list(await storage.visits.participants(visit.visit_id)) == people


async def test_a_sub_is_in_a_visit_once(storage: Storage) -> None:
    visit = new_visit()
    first, second = roster(visit, 2)
    with pytest.raises(Conflict):
        await storage.visits.create(visit, [first, dataclasses.replace(second, sub=first.sub)])
    assert await storage.visits.get(visit.visit_id) is None  # nothing was stored
    assert list(await storage.visits.participants(visit.visit_id)) == []


async def test_update_with_the_current_version_wins(storage: Storage) -> None:
    visit = new_visit()
    await storage.visits.create(visit, [])
    waiting = dataclasses.replace(visit, state=VisitState.WAITING, version=2)
    assert await storage.visits.update_visit(waiting, expected_version=1) == waiting
    ended = dataclasses.replace(
        waiting, state=VisitState.ENDED, ended_at=1_700_000_900.5, version=3
    )
    await storage.visits.update_visit(ended, expected_version=2)
    assert await storage.visits.get(visit.visit_id) == ended


async def test_update_with_a_stale_version_is_refused_and_changes_nothing(
    storage: Storage,
) -> None:
    visit = new_visit()
    await storage.visits.create(visit, [])
    current = dataclasses.replace(visit, state=VisitState.WAITING, version=2)
    await storage.visits.update_visit(current, expected_version=1)
    stale = dataclasses.replace(visit, state=VisitState.ENDED, ended_at=5.0, version=2)
    with pytest.raises(Conflict) as refused:
        await storage.visits.update_visit(stale, expected_version=1)
    assert refused.value.code == "visit.stale"
    assert await storage.visits.get(visit.visit_id) == current


async def test_concurrent_updates_of_one_version_have_exactly_one_winner(
    storage: Storage,
) -> None:
    visit = new_visit()
    await storage.visits.create(visit, [])
    states = [VisitState.WAITING, VisitState.ADMITTED, VisitState.ENDED] * 5
    attempts = [dataclasses.replace(visit, state=s, version=2) for s in states]
    results = await asyncio.gather(
        *(storage.visits.update_visit(a, expected_version=1) for a in attempts),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, Visit)]
    losers = [r for r in results if isinstance(r, Conflict)]
    assert len(winners) == 1
    assert len(losers) == len(attempts) - 1
    assert all(r.code == "visit.stale" for r in losers)
    assert await storage.visits.get(visit.visit_id) == winners[0]


async def test_compare_and_set_retries_never_lose_a_write(storage: Storage) -> None:
    """Writers that re-read and retry on conflict: every increment lands exactly once."""
    visit = new_visit()
    await storage.visits.create(visit, [])
    states = [VisitState.SCHEDULED, VisitState.WAITING]

    async def bump() -> None:
        while True:
            current = await storage.visits.get(visit.visit_id)
            assert current is not None
            following = dataclasses.replace(
                current, state=states[current.version % 2], version=current.version + 1
            )
            try:
                await storage.visits.update_visit(following, expected_version=current.version)
            except Conflict:
                await asyncio.sleep(0)
                continue
            return

    await asyncio.gather(*(bump() for _ in range(20)))
    final = await storage.visits.get(visit.visit_id)
    assert final is not None
    assert final.version == 21


async def test_concurrent_participant_writes_are_all_kept(storage: Storage) -> None:
    visit = new_visit()
    people = roster(visit, 12)
    await storage.visits.create(visit, people)
    moved = [
        dataclasses.replace(p, state=ParticipantState.WAITING, updated_at=2e9 + i)
        for i, p in enumerate(people)
    ]
    late = [invitee(visit, 100 + i) for i in range(12)]
    await asyncio.gather(*(storage.visits.upsert_participant(p) for p in [*moved, *late]))
    stored = list(await storage.visits.participants(visit.visit_id))
    assert stored[: len(moved)] == moved  # every update landed, invitation order kept
    assert sorted(stored[len(moved) :], key=lambda p: p.participant_id) == sorted(
        late, key=lambda p: p.participant_id
    )


async def test_visits_are_kept_apart(storage: Storage) -> None:
    one, two = new_visit(), new_visit()
    await storage.visits.create(one, roster(one, 2))
    await storage.visits.create(two, roster(two, 3))
    await storage.visits.upsert_participant(
        dataclasses.replace(roster(one, 1)[0], state=ParticipantState.ADMITTED)
    )
    assert [p.state for p in await storage.visits.participants(two.visit_id)] == [
        ParticipantState.INVITED
    ] * 3
    assert len(await storage.visits.participants(one.visit_id)) == 2


async def test_unknown_ids(storage: Storage) -> None:
    assert await storage.visits.get("v-nobody") is None
    assert list(await storage.visits.participants("v-nobody")) == []
    ghost = new_visit("v-nobody")
    with pytest.raises(NotFound):
        await storage.visits.update_visit(dataclasses.replace(ghost, version=2), expected_version=1)
    with pytest.raises(NotFound):
        await storage.visits.upsert_participant(invitee(ghost, 1))
    assert await storage.visits.get("v-nobody") is None
    assert list(await storage.visits.participants("v-nobody")) == []
