"""The hotline's pure rules: call and presence transitions, routing, moves, timers and figures."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from careline.signaling.errors import Conflict, NotFound
from careline.signaling.hotline_call import (
    CALL_TRANSITIONS,
    Call,
    CallState,
    EndReason,
    check_call_transition,
)
from careline.signaling.hotline_moves import (
    accept,
    attach,
    detach,
    end,
    free_orphaned,
    offer,
    offer_callback,
    request_callback,
    requeue,
    set_presence,
)
from careline.signaling.hotline_record import call_steps
from careline.signaling.hotline_routing import queue_order, queue_position, route
from careline.signaling.hotline_stats import estimate_wait, summarize
from careline.signaling.hotline_sweep import DueKind, SweepRules, due
from careline.signaling.kiosk import Kiosk, hash_secret, new_secret, secret_matches
from careline.signaling.presence import (
    PRESENCE_TRANSITIONS,
    Presence,
    PresenceState,
    come_online,
    move_presence,
    wrap_up_over,
)

NODE = "n-1"
RULES = SweepRules(reconnect_grace_seconds=30.0, callback_after_seconds=300.0)


def call(call_id: str = "c1", at: float = 100.0, skills: tuple[str, ...] = (), **kw: Any) -> Call:
    return dataclasses.replace(
        Call(
            call_id=call_id,
            kiosk_id=f"k-{call_id}",
            order_id=f"o-{call_id}",
            skills=skills,
            state=CallState.QUEUED,
            version=1,
            enqueued_at=at,
            kiosk_node=NODE,
        ),
        **kw,
    )


def pharmacist(
    sub: str = "ph1",
    idle: float = 50.0,
    skills: tuple[str, ...] = (),
    state: PresenceState = PresenceState.AVAILABLE,
    **kw: Any,
) -> Presence:
    return dataclasses.replace(
        Presence(
            sub=sub,
            state=state,
            version=1,
            node=NODE,
            skills=skills,
            since=idle,
            idle_since=idle,
        ),
        **kw,
    )


# -- transitions ---------------------------------------------------------------------------------


def test_call_transitions_are_checked_with_a_clear_message() -> None:
    check_call_transition(CallState.QUEUED, CallState.RINGING)
    with pytest.raises(Conflict) as caught:
        check_call_transition(CallState.COMPLETED, CallState.QUEUED)
    assert caught.value.code == "hotline.bad_transition"
    assert "expected one of nothing, got completed" in caught.value.message
    with pytest.raises(Conflict) as caught:
        check_call_transition(CallState.QUEUED, CallState.COMPLETED)
    assert "expected one of abandoned, callback, ringing, got queued" in caught.value.message
    terminal = [s for s, targets in CALL_TRANSITIONS.items() if not targets]
    assert set(terminal) == {CallState.COMPLETED, CallState.ABANDONED, CallState.CALLBACK}


def test_every_presence_state_may_go_offline_but_offline_only_comes_back_as_away() -> None:
    for state, targets in PRESENCE_TRANSITIONS.items():
        if state is not PresenceState.OFFLINE:
            assert PresenceState.OFFLINE in targets
    assert PRESENCE_TRANSITIONS[PresenceState.OFFLINE] == {PresenceState.AWAY}
    busy = pharmacist(state=PresenceState.BUSY)
    with pytest.raises(Conflict) as caught:
        move_presence(busy, PresenceState.AVAILABLE, 10.0)
    assert "expected one of offline, wrap_up, got busy" in caught.value.message


def test_becoming_available_restarts_the_idle_clock_unless_kept() -> None:
    away = pharmacist(state=PresenceState.AWAY, idle=1.0)
    assert move_presence(away, PresenceState.AVAILABLE, 9.0).idle_since == 9.0
    ringing = pharmacist(state=PresenceState.RINGING, idle=1.0, call_id="c1")
    kept = move_presence(ringing, PresenceState.AVAILABLE, 9.0, keep_idle=True)
    assert (kept.idle_since, kept.call_id, kept.version) == (1.0, None, 2)


def test_coming_online_is_away_and_a_second_console_keeps_the_state() -> None:
    first = come_online(None, "ph1", NODE, ("lang:es",), 5.0)
    assert (first.state, first.version, first.skills) == (PresenceState.AWAY, 1, ("lang:es",))
    offline = pharmacist(state=PresenceState.OFFLINE)
    assert come_online(offline, "ph1", "n-2", (), 6.0).state is PresenceState.AWAY
    busy = pharmacist(state=PresenceState.BUSY, call_id="c1")
    moved = come_online(busy, "ph1", "n-2", (), 6.0)
    assert (moved.state, moved.node, moved.version) == (PresenceState.BUSY, "n-2", 2)


def test_wrap_up_expires_at_its_time() -> None:
    wrapping = pharmacist(state=PresenceState.WRAP_UP, wrap_until=20.0)
    assert not wrap_up_over(wrapping, 19.9)
    assert wrap_up_over(wrapping, 20.0)
    assert not wrap_up_over(pharmacist(), 99.0)


# -- routing -------------------------------------------------------------------------------------


def test_longest_waiting_call_goes_to_longest_idle_pharmacist() -> None:
    calls = [call("late", at=30.0), call("early", at=10.0), call("mid", at=20.0)]
    staff = [pharmacist("recent", idle=90.0), pharmacist("oldest", idle=5.0)]
    pairs = [(a.call.call_id, a.pharmacist.sub) for a in route(calls, staff, 100.0, 60.0)]
    assert pairs == [("early", "oldest"), ("mid", "recent")]


def test_requeued_calls_go_first_and_passed_pharmacist_is_avoided() -> None:
    calls = [call("old", at=10.0), call("back", at=50.0, requeued=True, passed_by="a")]
    assert [c.call_id for c in queue_order(calls)] == ["back", "old"]
    assert queue_position(calls, "old") == 2
    assert queue_position(calls, "nope") is None
    staff = [pharmacist("a", idle=1.0), pharmacist("b", idle=2.0)]
    pairs = [(a.call.call_id, a.pharmacist.sub) for a in route(calls, staff, 60.0, 600.0)]
    assert pairs == [("back", "b"), ("old", "a")]
    # When nobody else can take it, the pharmacist who passed gets it again.
    only = route([calls[1]], [pharmacist("a")], 60.0, 600.0)
    assert [a.pharmacist.sub for a in only] == ["a"]


def test_skills_route_with_fallback_after_the_wait() -> None:
    spanish = call("es", at=90.0, skills=("lang:es",))
    plain = call("plain", at=95.0)
    staff = [pharmacist("en", idle=1.0), pharmacist("es-speaker", idle=50.0, skills=("lang:es",))]
    pairs = {a.call.call_id: a.pharmacist.sub for a in route([spanish, plain], staff, 100.0, 60.0)}
    assert pairs == {"es": "es-speaker", "plain": "en"}
    # Nobody with the skill: the call waits, and does not block the call behind it.
    assigned = route([spanish, plain], [pharmacist("en")], 100.0, 60.0)
    assert [(a.call.call_id, a.pharmacist.sub) for a in assigned] == [("plain", "en")]
    # After the fallback wait anyone may take it.
    late = route([spanish], [pharmacist("en")], 150.0, 60.0)
    assert [a.pharmacist.sub for a in late] == ["en"]


def test_only_available_pharmacists_and_queued_calls_are_routed() -> None:
    calls = [call("ringing", state=CallState.RINGING), call("queued")]
    staff = [
        pharmacist("away", state=PresenceState.AWAY, idle=0.0),
        pharmacist("busy", state=PresenceState.BUSY, idle=0.0),
        pharmacist("free", idle=10.0),
    ]
    assigned = route(calls, staff, 100.0, 60.0)
    assert [(a.call.call_id, a.pharmacist.sub) for a in assigned] == [("queued", "free")]
    assert route(calls, [], 100.0, 60.0) == []


# -- moves ---------------------------------------------------------------------------------------


def test_offer_accept_hang_up_and_wrap_up() -> None:
    change = offer(call(), pharmacist(), 101.0, 20.0)
    ringing, rung = change.calls[0], change.presences[0]
    assert (ringing.state, ringing.pharmacist, ringing.ring_deadline) == (
        CallState.RINGING,
        "ph1",
        121.0,
    )
    assert (ringing.offers, ringing.offered_at, ringing.version) == (1, 101.0, 2)
    assert (rung.state, rung.call_id) == (PresenceState.RINGING, "c1")
    answered = accept(ringing, rung, "ph1", 105.0, kiosk_session="s-k", pharmacist_session="s-p")
    assert answered is not None
    connected, busy = answered.calls[0], answered.presences[0]
    assert (connected.state, connected.accepted_at, connected.ring_deadline) == (
        CallState.CONNECTED,
        105.0,
        None,
    )
    assert busy.state is PresenceState.BUSY
    # Accepting again is a no-op for the same pharmacist, an error for anyone else.
    assert accept(connected, busy, "ph1", 106.0, kiosk_session="x", pharmacist_session="y") is None
    with pytest.raises(Conflict) as caught:
        accept(connected, None, "ph2", 106.0, kiosk_session="x", pharmacist_session="y")
    assert caught.value.code == "hotline.call_taken"
    ended = end(connected, busy, 200.0, EndReason.KIOSK_HANGUP, 30.0)
    assert ended is not None
    done, wrapping = ended.calls[0], ended.presences[0]
    assert (done.state, done.ended_at, done.end_reason) == (
        CallState.COMPLETED,
        200.0,
        EndReason.KIOSK_HANGUP,
    )
    assert (wrapping.state, wrapping.wrap_until) == (PresenceState.WRAP_UP, 230.0)
    assert end(done, wrapping, 201.0, EndReason.KIOSK_HANGUP, 30.0) is None


def test_accept_of_a_call_not_offered_to_you_is_refused() -> None:
    ringing = offer(call(), pharmacist("ph1"), 101.0, 20.0).calls[0]
    other = pharmacist("ph2")
    for candidate, presence in ((ringing, other), (call(), other)):
        with pytest.raises(Conflict) as caught:
            accept(candidate, presence, "ph2", 102.0, kiosk_session="a", pharmacist_session="b")
        assert caught.value.code == "hotline.not_offered"
    with pytest.raises(NotFound):
        accept(None, other, "ph2", 102.0, kiosk_session="a", pharmacist_session="b")
    gone = dataclasses.replace(call(), state=CallState.ABANDONED)
    with pytest.raises(Conflict) as caught:
        accept(gone, other, "ph2", 102.0, kiosk_session="a", pharmacist_session="b")
    assert caught.value.code == "hotline.call_ended"


def test_requeue_goes_to_the_head_and_sets_the_pharmacist() -> None:
    change = offer(call(), pharmacist(), 101.0, 20.0)
    back = requeue(change.calls[0], change.presences[0], 121.0, PresenceState.AWAY, "ring_timeout")
    assert back is not None
    queued, paused = back.calls[0], back.presences[0]
    assert (queued.state, queued.requeued, queued.passed_by, queued.pharmacist) == (
        CallState.QUEUED,
        True,
        "ph1",
        None,
    )
    assert (paused.state, paused.reason, paused.call_id) == (
        PresenceState.AWAY,
        "ring_timeout",
        None,
    )
    assert requeue(queued, None, 122.0, PresenceState.AWAY) is None


def test_abandon_while_ringing_frees_the_pharmacist_keeping_their_place() -> None:
    change = offer(call(), pharmacist(idle=7.0), 101.0, 20.0)
    gone = end(change.calls[0], change.presences[0], 105.0, EndReason.CALLER_CANCELLED, 30.0)
    assert gone is not None
    assert gone.calls[0].state is CallState.ABANDONED
    freed = gone.presences[0]
    assert (freed.state, freed.idle_since) == (PresenceState.AVAILABLE, 7.0)


def test_callback_only_after_it_was_offered() -> None:
    waiting = call()
    with pytest.raises(Conflict) as caught:
        request_callback(waiting, None, 500.0, 30.0)
    assert caught.value.code == "hotline.no_callback_offer"
    offered = offer_callback(waiting, 400.0)
    assert offered is not None
    marked = offered.calls[0]
    assert (marked.state, marked.callback_offered_at, marked.version) == (
        CallState.QUEUED,
        400.0,
        2,
    )
    assert offer_callback(marked, 401.0) is None
    done = request_callback(marked, None, 410.0, 30.0).calls[0]
    assert (done.state, done.end_reason) == (CallState.CALLBACK, EndReason.CALLBACK)


def test_detach_and_attach_the_kiosk() -> None:
    change = detach(call(), 150.0)
    assert change is not None
    detached = change.calls[0]
    assert detached.detached_at == 150.0
    assert detach(detached, 151.0) is None
    back = attach(detached, "n-2").calls[0]
    assert (back.detached_at, back.kiosk_node) == (None, "n-2")


def test_pharmacist_chooses_available_or_away() -> None:
    away = pharmacist(state=PresenceState.AWAY)
    ready = set_presence(away, PresenceState.AVAILABLE, 3.0)
    assert ready is not None
    assert ready.state is PresenceState.AVAILABLE
    assert set_presence(ready, PresenceState.AVAILABLE, 4.0) is None
    wrapping = pharmacist(state=PresenceState.WRAP_UP, call_id="c1", wrap_until=99.0)
    early = set_presence(wrapping, PresenceState.AVAILABLE, 5.0)
    assert early is not None
    assert (early.call_id, early.wrap_until) == (None, None)
    with pytest.raises(Conflict):
        set_presence(pharmacist(state=PresenceState.RINGING), PresenceState.AWAY, 5.0)


# -- timers --------------------------------------------------------------------------------------


def test_due_finds_ring_timeouts_wrap_up_grace_callbacks_and_lost_nodes() -> None:
    ringing = call("r", state=CallState.RINGING, pharmacist="ph1", ring_deadline=120.0)
    rung = pharmacist("ph1", state=PresenceState.RINGING, call_id="r")
    wrapping = pharmacist("ph2", state=PresenceState.WRAP_UP, wrap_until=110.0)
    lost = pharmacist("ph3", node="dead")
    detached = call("d", detached_at=80.0)
    long_wait = call("w", at=-200.0)
    foreign = call("f", kiosk_node="dead")
    calls = [ringing, detached, long_wait, foreign]
    kinds = {
        (d.kind, d.call_id or d.sub)
        for d in due(calls, [rung, wrapping, lost], {NODE}, 120.0, RULES)
    }
    assert kinds == {
        (DueKind.RING_TIMEOUT, "r"),
        (DueKind.WRAP_UP_OVER, "ph2"),
        (DueKind.PHARMACIST_LOST, "ph3"),
        (DueKind.KIOSK_GONE, "d"),
        (DueKind.CALLBACK_OFFER, "w"),
        (DueKind.KIOSK_LOST, "f"),
    }
    quiet = [ringing, foreign, dataclasses.replace(detached, detached_at=None)]
    assert due(quiet, [rung], {NODE, "dead"}, 100.0, RULES) == []


def test_due_finds_calls_whose_pharmacist_is_not_on_them() -> None:
    connected = call("c", state=CallState.CONNECTED, pharmacist="ph1")
    offline = pharmacist("ph1", state=PresenceState.OFFLINE)
    found = due([connected], [offline], {NODE}, 100.0, RULES)
    assert [(d.kind, d.call_id) for d in found] == [(DueKind.ORPHANED, "c")]
    busy = pharmacist("ph1", state=PresenceState.BUSY, call_id="c")
    assert due([connected], [busy], {NODE}, 100.0, RULES) == []


def test_due_finds_pharmacists_stranded_on_a_call_that_moved_on() -> None:
    ringing = pharmacist("ph1", state=PresenceState.RINGING, call_id="gone")
    busy = pharmacist("ph2", state=PresenceState.BUSY, call_id="c")
    other = call("c", state=CallState.CONNECTED, pharmacist="ph3")
    found = due([other], [ringing, busy], {NODE}, 100.0, RULES)
    assert {(d.kind, d.sub) for d in found if d.sub} == {
        (DueKind.STRANDED, "ph1"),
        (DueKind.STRANDED, "ph2"),
    }


# -- figures -------------------------------------------------------------------------------------


def test_summary_asa_abandonment_and_service_level() -> None:
    answered_fast = call(
        "a", at=100.0, state=CallState.COMPLETED, accepted_at=110.0, ended_at=170.0
    )
    answered_slow = call(
        "b", at=100.0, state=CallState.COMPLETED, accepted_at=190.0, ended_at=250.0
    )
    abandoned = call("c", at=100.0, state=CallState.ABANDONED, ended_at=120.0)
    callback = call("d", at=100.0, state=CallState.CALLBACK, ended_at=500.0)
    too_old = call("e", at=-5000.0, state=CallState.ABANDONED)
    waiting = call("f", at=900.0)
    stats = summarize(
        [answered_fast, answered_slow, abandoned, callback, too_old],
        [waiting],
        [pharmacist("p1"), pharmacist("p2", state=PresenceState.BUSY)],
        1000.0,
        window_seconds=3600.0,
        service_level_seconds=60.0,
        wrap_up_seconds=30.0,
    )
    assert (stats.calls, stats.answered, stats.abandoned, stats.callbacks) == (4, 2, 1, 1)
    assert stats.asa_seconds == 50.0
    assert stats.abandonment_rate == pytest.approx(1 / 3)
    assert stats.service_level == pytest.approx(1 / 3)
    assert stats.average_handle_seconds == 90.0
    assert (stats.queue_length, stats.longest_wait_seconds) == (1, 100.0)
    assert stats.pharmacists["available"] == 1
    assert stats.pharmacists["busy"] == 1
    assert stats.pharmacists["offline"] == 0
    empty = summarize(
        [], [], [], 0.0, window_seconds=60.0, service_level_seconds=20.0, wrap_up_seconds=0.0
    )
    assert (empty.asa_seconds, empty.abandonment_rate, empty.service_level) == (None, None, None)


def test_estimated_wait() -> None:
    assert estimate_wait(1, 2, 100.0) == 100.0
    assert estimate_wait(3, 2, 100.0) == 200.0
    assert estimate_wait(3, 0, 100.0) is None


def test_kiosk_secret_is_kept_only_as_a_hash() -> None:
    secret = new_secret()
    kiosk = Kiosk("k1", None, (), hash_secret(secret), 1.0)
    assert secret not in kiosk.secret_hash
    assert secret_matches(kiosk, secret)
    assert not secret_matches(kiosk, secret + "x")


def test_call_steps_audit_every_move_with_ids_only() -> None:
    placed = call()
    [enqueued] = call_steps(None, placed)
    assert (enqueued.action, enqueued.detail, enqueued.metric) == (
        "enqueued",
        {"kiosk": "k-c1", "order": "o-c1"},
        "enqueued",
    )
    ringing = offer(placed, pharmacist(), 101.0, 20.0).calls[0]
    assert [s.action for s in call_steps(placed, ringing)] == ["offered"]
    back = requeue(ringing, None, 121.0, PresenceState.AWAY)
    assert back is not None
    [requeued] = call_steps(ringing, back.calls[0], "ring_timeout")
    assert (requeued.detail, requeued.metric) == (
        {"pharmacist": "ph1", "reason": "ring_timeout"},
        "ring_timeout",
    )
    detached = detach(placed, 5.0)
    assert detached is not None
    [gone] = call_steps(placed, detached.calls[0])
    assert (gone.action, gone.metric) == ("kiosk_detached", None)
    ended = end(placed, None, 9.0, EndReason.CALLER_CANCELLED, 0.0)
    assert ended is not None
    [abandoned] = call_steps(placed, ended.calls[0])
    assert (abandoned.action, abandoned.detail) == ("abandoned", {"reason": "caller_cancelled"})


def test_an_orphaned_call_is_freed_only_while_still_orphaned() -> None:
    placed = call()
    rung = offer(placed, pharmacist(), 101.0, 20.0)
    ringing, ringing_ph = rung.calls[0], rung.presences[0]
    # Its pharmacist still rings for it: nothing to free.
    assert free_orphaned(ringing, ringing_ph, 102.0, 5.0) is None
    # The pharmacist left it: back to the head of the queue.
    gone = pharmacist(state=PresenceState.OFFLINE)
    freed = free_orphaned(ringing, gone, 102.0, 5.0)
    assert freed is not None
    assert freed.calls[0].state is CallState.QUEUED
    assert freed.calls[0].requeued
    # The sweep saw it orphaned, but meanwhile the pharmacist's disconnect requeued it: the
    # queued call stays queued (it used to be ended as "pharmacist_disconnected").
    assert free_orphaned(freed.calls[0], gone, 103.0, 5.0) is None
    # A connected call whose pharmacist is gone ends.
    connected = dataclasses.replace(ringing, state=CallState.CONNECTED, accepted_at=102.0)
    ended = free_orphaned(connected, gone, 104.0, 5.0)
    assert ended is not None
    assert ended.calls[0].state is CallState.COMPLETED
    assert ended.calls[0].end_reason is EndReason.PHARMACIST_DISCONNECTED
