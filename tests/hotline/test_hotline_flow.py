"""The hotline end to end on a real server: routing, ring timeout, abandon, accept, end, races."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.hotline.conftest import Hotline, hotline_settings
from tests.support import running_server


async def test_call_is_offered_accepted_ended_and_recorded(hotline: Hotline) -> None:
    pharmacist = await hotline.pharmacist("ph-1")
    kiosk = await hotline.kiosk("k-1")
    call = await kiosk.place_call(hotline.order())
    assert call["state"] in ("queued", "ringing")
    offered = await pharmacist.wait_event("hotline.offer")
    assert offered["call_id"] == call["call_id"]
    assert offered["order_id"] == "ord-1"
    accepted = await pharmacist.accept(call["call_id"])
    assert accepted["state"] == "connected"
    at_kiosk = await kiosk.wait_event("hotline.call", where=lambda c: c["state"] == "connected")
    assert at_kiosk["peer_session_id"] == accepted["session_id"]
    presence = await pharmacist.wait_event("hotline.presence", where=lambda p: p["state"] == "busy")
    assert presence["call_id"] == call["call_id"]

    ended = await kiosk.call("hotline.end")
    assert (ended["state"], ended["end_reason"]) == ("completed", "kiosk_hangup")
    await pharmacist.wait_event("hotline.call", where=lambda c: c["state"] == "completed")
    await pharmacist.wait_event("hotline.presence", where=lambda p: p["state"] == "wrap_up")
    # Wrap-up expires by itself.
    await pharmacist.wait_event("hotline.presence", where=lambda p: p["state"] == "available")

    record = await hotline.record(call["call_id"])
    assert record["call"]["state"] == "completed"
    assert record["call"]["enqueued_at"] <= record["call"]["offered_at"]
    assert record["call"]["offered_at"] <= record["call"]["accepted_at"]
    assert record["call"]["accepted_at"] <= record["call"]["ended_at"]

    async def actions() -> list[str]:
        return [e["action"] for e in (await hotline.record(call["call_id"]))["events"]]

    for _ in range(50):
        if "completed" in await actions():
            break
        await asyncio.sleep(0.05)
    assert await actions() == ["enqueued", "offered", "accepted", "completed"]


async def test_routing_longest_waiting_call_to_longest_idle_pharmacist(hotline: Hotline) -> None:
    kiosks = [await hotline.kiosk(f"k-{i}") for i in range(3)]
    calls = []
    for kiosk in kiosks:
        calls.append((await kiosk.place_call(hotline.order()))["call_id"])
        await asyncio.sleep(0.02)
    first = await hotline.pharmacist("ph-a")
    offer_a = await first.wait_event("hotline.offer")
    second = await hotline.pharmacist("ph-b")
    offer_b = await second.wait_event("hotline.offer")
    assert [offer_a["call_id"], offer_b["call_id"]] == calls[:2]
    # The last kiosk sees its position (1: head of the queue) and an estimate.
    position = await kiosks[2].wait_event("hotline.position", where=lambda p: p["position"] == 1)
    assert position["call_id"] == calls[2]
    assert position["estimated_wait_seconds"] is not None

    # Both end their calls; the one idle longest (who finished first) gets the next call.
    for pharmacist, offer in ((first, offer_a), (second, offer_b)):
        await pharmacist.accept(offer["call_id"])
    await first.call("hotline.end")
    await asyncio.sleep(0.05)
    await second.call("hotline.end")
    for pharmacist in (first, second):
        await pharmacist.wait_event("hotline.presence", where=lambda p: p["state"] == "wrap_up")
    await first.available()
    await asyncio.sleep(0.05)
    await second.available()
    offer_c = await first.wait_event("hotline.offer", where=lambda o: o["call_id"] == calls[2])
    assert offer_c["order_id"]
    assert not [o for o in second.pushes("hotline.offer") if o["call_id"] == calls[2]]


async def test_skills_route_to_the_matching_pharmacist_then_fall_back(hotline: Hotline) -> None:
    generalist = await hotline.pharmacist("ph-gen")
    await asyncio.sleep(0.05)
    kiosk = await hotline.kiosk("k-ca", skills=("licence:CA",))
    call = await kiosk.place_call(hotline.order(skills=("lang:es",)))
    assert call["skills"] == ["lang:es", "licence:CA"]
    await asyncio.sleep(0.3)
    assert generalist.pushes("hotline.offer") == []  # lacks the skills, before the fallback
    specialist = await hotline.pharmacist("ph-es", skills=("lang:es", "licence:CA"))
    offered = await specialist.wait_event("hotline.offer")
    assert offered["call_id"] == call["call_id"]
    await specialist.close()  # gone mid-ring: the call goes back to the head of the queue
    # After skill_fallback_seconds (2 s) anyone may take it.
    fallback = await generalist.wait_event("hotline.offer", within=5)
    assert fallback["call_id"] == call["call_id"]


async def test_ring_timeout_requeues_at_the_head_and_pauses_the_pharmacist(
    hotline: Hotline,
) -> None:
    sleepy = await hotline.pharmacist("ph-sleepy")
    kiosk_1 = await hotline.kiosk("k-1")
    first = await kiosk_1.place_call(hotline.order())
    await sleepy.wait_event("hotline.offer")
    kiosk_2 = await hotline.kiosk("k-2")
    await kiosk_2.place_call(hotline.order())
    withdrawn = await sleepy.wait_event("hotline.offer_withdrawn", within=5)
    assert withdrawn == {"call_id": first["call_id"], "reason": "ring_timeout"}
    paused = await sleepy.wait_event("hotline.presence", where=lambda p: p["reason"] is not None)
    assert (paused["state"], paused["reason"]) == ("away", "ring_timeout")
    await asyncio.sleep(0.2)
    assert len(sleepy.pushes("hotline.offer")) == 1  # paused: nothing more is offered

    # The re-queued call is at the head: the next pharmacist gets it before the newer call.
    awake = await hotline.pharmacist("ph-awake")
    offered = await awake.wait_event("hotline.offer")
    assert offered["call_id"] == first["call_id"]
    # A late accept by the paused pharmacist is refused; the new one's wins.
    assert await sleepy.error("hotline.accept", {"call_id": first["call_id"]}) == (
        "hotline.not_offered"
    )
    await awake.accept(first["call_id"])
    record = await hotline.record(first["call_id"])
    assert record["offers"] == 2
    assert [e["action"] for e in record["events"]][:4] == [
        "enqueued",
        "offered",
        "requeued",
        "offered",
    ]


async def test_the_caller_abandons_while_queued_and_while_ringing(hotline: Hotline) -> None:
    kiosk = await hotline.kiosk("k-1")
    call = await kiosk.place_call(hotline.order())
    gone = await kiosk.call("hotline.end")
    assert (gone["state"], gone["end_reason"]) == ("abandoned", "caller_cancelled")
    pharmacist = await hotline.pharmacist("ph-1")
    again = await kiosk.place_call(hotline.order())
    await pharmacist.wait_event("hotline.offer", where=lambda o: o["call_id"] == again["call_id"])
    await kiosk.call("hotline.end")
    withdrawn = await pharmacist.wait_event("hotline.offer_withdrawn")
    assert withdrawn == {"call_id": again["call_id"], "reason": "abandoned"}
    await pharmacist.wait_event(
        "hotline.presence", where=lambda p: p["state"] == "available" and p["since"] > 0
    )
    stats = (await hotline.rest("GET", "/api/hotline/stats"))[1]
    assert stats["abandoned"] == 2
    assert stats["abandonment_rate"] == 1.0
    assert (await hotline.record(call["call_id"]))["call"]["state"] == "abandoned"


async def test_two_pharmacists_race_to_accept_one_call_exactly_one_wins(hotline: Hotline) -> None:
    first = await hotline.pharmacist("ph-1")
    second = await hotline.pharmacist("ph-2")
    kiosk = await hotline.kiosk("k-1")
    call = await kiosk.place_call(hotline.order())
    offered_to = None
    async with asyncio.timeout(5):
        while offered_to is None:
            for client in (first, second):
                if client.pushes("hotline.offer"):
                    offered_to = client
            await asyncio.sleep(0.01)
    results = await asyncio.gather(
        first.call("hotline.accept", {"call_id": call["call_id"]}),
        second.call("hotline.accept", {"call_id": call["call_id"]}),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert getattr(losers[0], "code", None) in ("hotline.not_offered", "hotline.call_taken")
    stats = (await hotline.rest("GET", "/api/hotline/stats"))[1]
    assert stats["answered"] == 1
    assert stats["pharmacists"]["busy"] == 1


async def test_callback_is_offered_after_a_long_wait_and_recorded(tmp_path: Path) -> None:
    settings = hotline_settings(tmp_path / "data", **{"hotline.callback_after_seconds": 0.5})
    async with running_server(settings) as server:
        hotline = Hotline(server)
        try:
            kiosk = await hotline.kiosk("k-1")
            assert await kiosk.error("hotline.callback") == "hotline.no_call"
            call = await kiosk.place_call(hotline.order())
            assert await kiosk.error("hotline.callback") == "hotline.no_callback_offer"
            offer = await kiosk.wait_event("hotline.callback_offer", within=5)
            assert offer["call_id"] == call["call_id"]
            assert offer["waited_seconds"] >= 0.5
            taken = await kiosk.call("hotline.callback")
            assert (taken["state"], taken["end_reason"]) == ("callback", "callback")
            record = await hotline.record(call["call_id"])
            assert record["call"]["callback_offered"] is True
            stats = (await hotline.rest("GET", "/api/hotline/stats"))[1]
            assert (stats["callbacks"], stats["abandoned"]) == (1, 0)
        finally:
            await hotline.close()


async def test_metrics_and_stats_without_ids(hotline: Hotline) -> None:
    pharmacist, kiosk, call, _ = await hotline.answered("ph-metrics", "k-metrics")
    await pharmacist.call("hotline.end")
    await kiosk.place_call(hotline.order())
    stats = (await hotline.rest("GET", "/api/hotline/stats"))[1]
    assert (stats["calls"], stats["answered"], stats["completed"]) == (2, 1, 1)
    assert stats["asa_seconds"] is not None
    assert stats["service_level"] == 1.0
    assert stats["queue_length"] == 1
    async with (
        aiohttp.ClientSession() as http,
        http.get(hotline.url + "/metrics") as response,
    ):
        text = await response.text()
    for line in (
        'careline_hotline_calls_total{event="enqueued"} 2.0',
        'careline_hotline_calls_total{event="accepted"} 1.0',
        'careline_hotline_calls_total{event="completed"} 1.0',
        "careline_hotline_dispatch_seconds_count 1.0",
        "careline_hotline_answer_seconds_count 1.0",
        "careline_hotline_queue_length 1.0",
        "careline_hotline_service_level_ratio 1.0",
        'careline_hotline_pharmacists{state="wrap_up"} 1.0',
    ):
        assert line in text, line
    for private in ("ph-metrics", "k-metrics", "ord-", call["call_id"]):
        assert private not in text
