"""Contract of signaling.hotline_store (HotlineStore), run against every backend."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from careline.signaling.errors import Conflict
from careline.signaling.hotline_call import Call, CallState, EndReason
from careline.signaling.hotline_moves import end, offer
from careline.signaling.hotline_store import HotlineChange
from careline.signaling.kiosk import Kiosk, hash_secret, set_disabled
from careline.signaling.presence import Presence, PresenceState
from careline.signaling.stores import Storage


def new_call(call_id: str = "c1", kiosk: str = "k1", at: float = 100.0) -> Call:
    return Call(
        call_id=call_id,
        kiosk_id=kiosk,
        order_id=f"o-{call_id}",
        skills=("lang:es",),
        state=CallState.QUEUED,
        version=1,
        enqueued_at=at,
        kiosk_node="n-1",
    )


def new_presence(sub: str = "ph1") -> Presence:
    return Presence(
        sub=sub,
        state=PresenceState.AVAILABLE,
        version=1,
        node="n-1",
        skills=("lang:es",),
        since=10.0,
        idle_since=10.0,
    )


async def test_calls_round_trip_every_field(storage: Storage) -> None:
    store = storage.hotline
    call = new_call()
    await store.apply(HotlineChange(calls=(call,)))
    assert await store.get_call("c1") == call
    full = dataclasses.replace(
        call,
        state=CallState.COMPLETED,
        version=2,
        requeued=True,
        pharmacist="ph1",
        passed_by="ph0",
        offers=3,
        offered_at=101.5,
        accepted_at=102.25,
        ended_at=150.0,
        end_reason=EndReason.PHARMACIST_HANGUP,
        callback_offered_at=120.0,
        kiosk_session="s-1",
        pharmacist_session="s-2",
    )
    await store.apply(HotlineChange(calls=(full,)))
    assert await store.get_call("c1") == full
    assert await store.get_call("nope") is None


async def test_open_calls_and_the_kiosk_index_follow_the_state(storage: Storage) -> None:
    store = storage.hotline
    first, second = new_call("c1", "k1"), new_call("c2", "k2")
    await store.apply(HotlineChange(calls=(first, second)))
    assert {c.call_id for c in await store.open_calls()} == {"c1", "c2"}
    assert await store.open_call_of("k1") == first
    done = end(first, None, 120.0, EndReason.CALLER_CANCELLED, 0.0)
    assert done is not None
    await store.apply(done)
    assert [c.call_id for c in await store.open_calls()] == ["c2"]
    assert await store.open_call_of("k1") is None
    assert (await store.get_call("c1")) == done.calls[0]


async def test_a_kiosk_has_one_open_call(storage: Storage) -> None:
    store = storage.hotline
    await store.apply(HotlineChange(calls=(new_call("c1", "k1"),)))
    with pytest.raises(Conflict) as caught:
        await store.apply(HotlineChange(calls=(new_call("c2", "k1"),)))
    assert caught.value.code == "hotline.already_calling"
    assert await store.get_call("c2") is None
    first = await store.get_call("c1")
    assert first is not None
    ended = end(first, None, 130.0, EndReason.CALLER_CANCELLED, 0.0)
    assert ended is not None
    await store.apply(ended)
    await store.apply(HotlineChange(calls=(new_call("c3", "k1"),)))
    again = await store.open_call_of("k1")
    assert again is not None
    assert again.call_id == "c3"


async def test_apply_is_compare_and_set_all_or_nothing(storage: Storage) -> None:
    store = storage.hotline
    call, presence = new_call(), new_presence()
    await store.apply(HotlineChange(calls=(call,), presences=(presence,)))
    with pytest.raises(Conflict) as caught:
        await store.apply(HotlineChange(presences=(presence,)))  # version 1 again: exists
    assert caught.value.code == "hotline.stale"
    change = offer(call, presence, 101.0, 20.0)
    stale_presence = dataclasses.replace(presence, version=5)
    with pytest.raises(Conflict):
        await store.apply(HotlineChange(calls=change.calls, presences=(stale_presence,)))
    assert await store.get_call("c1") == call  # the call was not written either
    await store.apply(change)
    assert await store.get_call("c1") == change.calls[0]
    assert await store.get_presence("ph1") == change.presences[0]
    with pytest.raises(Conflict):
        await store.apply(change)


async def test_two_racing_offers_of_one_call_exactly_one_wins(storage: Storage) -> None:
    store = storage.hotline
    call = new_call()
    pharmacists = [new_presence(f"ph{i}") for i in range(8)]
    await store.apply(HotlineChange(calls=(call,), presences=tuple(pharmacists)))
    results = await asyncio.gather(
        *(store.apply(offer(call, p, 101.0, 20.0)) for p in pharmacists), return_exceptions=True
    )
    winners = [r for r in results if r is None]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) and r.code == "hotline.stale" for r in results if r)
    stored = await store.get_call("c1")
    assert stored is not None
    assert stored.state is CallState.RINGING
    ringing = [p for p in await store.presences() if p.state is PresenceState.RINGING]
    assert [p.sub for p in ringing] == [stored.pharmacist]


async def test_two_calls_racing_for_one_pharmacist_exactly_one_wins(storage: Storage) -> None:
    store = storage.hotline
    presence = new_presence()
    calls = [new_call(f"c{i}", f"k{i}") for i in range(6)]
    await store.apply(HotlineChange(calls=tuple(calls), presences=(presence,)))
    results = await asyncio.gather(
        *(store.apply(offer(c, presence, 101.0, 20.0)) for c in calls), return_exceptions=True
    )
    assert sum(1 for r in results if r is None) == 1
    ringing = [c for c in await store.open_calls() if c.state is CallState.RINGING]
    assert len(ringing) == 1


async def test_recent_calls_in_time_order(storage: Storage) -> None:
    store = storage.hotline
    for i, at in enumerate((300.0, 100.0, 200.0)):
        await store.apply(HotlineChange(calls=(new_call(f"c{i}", f"k{i}", at=at),)))
    assert [c.call_id for c in await store.recent_calls(0.0)] == ["c1", "c2", "c0"]
    assert [c.call_id for c in await store.recent_calls(150.0)] == ["c2", "c0"]
    assert [c.call_id for c in await store.recent_calls(0.0, limit=1)] == ["c1"]
    assert await store.recent_calls(1000.0) == []


async def test_presences_round_trip(storage: Storage) -> None:
    store = storage.hotline
    assert await store.get_presence("ph1") is None
    presence = dataclasses.replace(
        new_presence(), call_id="c1", wrap_until=12.5, reason="ring_timeout"
    )
    other = new_presence("ph2")
    await store.apply(HotlineChange(presences=(presence, other)))
    assert await store.get_presence("ph1") == presence
    assert sorted(p.sub for p in await store.presences()) == ["ph1", "ph2"]


async def test_kiosks_and_skills(storage: Storage) -> None:
    store = storage.hotline
    kiosk = Kiosk("k1", "site-9", ("licence:CA",), hash_secret("s"), 5.0)
    await store.add_kiosk(kiosk)
    assert await store.get_kiosk("k1") == kiosk
    assert await store.get_kiosk("k2") is None
    with pytest.raises(Conflict) as caught:
        await store.add_kiosk(kiosk)
    assert caught.value.code == "hotline.kiosk_exists"
    disabled = set_disabled(kiosk, 9.0)
    await store.update_kiosk(disabled)
    assert await store.get_kiosk("k1") == disabled
    with pytest.raises(Conflict):
        await store.update_kiosk(disabled)  # stale: already at that version
    assert await store.get_skills("ph1") == ()
    await store.set_skills("ph1", ("lang:es", "licence:CA"))
    await store.set_skills("ph1", ("lang:fr",))
    assert await store.get_skills("ph1") == ("lang:fr",)


async def test_node_leases(storage: Storage) -> None:
    store = storage.hotline
    await store.heartbeat("n-1", until=100.0)
    await store.heartbeat("n-2", until=50.0)
    assert await store.live_nodes(40.0) == {"n-1", "n-2"}
    assert await store.live_nodes(50.0) == {"n-1"}
    await store.heartbeat("n-2", until=200.0)
    assert await store.live_nodes(150.0) == {"n-2"}
