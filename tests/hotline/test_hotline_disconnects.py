"""Disconnects at every state: nobody stays ringing or busy, calls are re-queued or ended."""

from __future__ import annotations

from typing import Any

from tests.hotline.conftest import Hotline, poll


async def stats(hotline: Hotline) -> dict[str, Any]:
    status, body = await hotline.rest("GET", "/api/hotline/stats")
    assert status == 200
    return dict(body)


async def pharmacists_by_state(hotline: Hotline) -> dict[str, int]:
    return {k: v for k, v in (await stats(hotline))["pharmacists"].items() if v}


async def settles_to(hotline: Hotline, expected: dict[str, int], within: float = 5.0) -> None:
    """Wait until the pharmacists by state are `expected` (disconnects are seen asynchronously)."""
    found = await poll(lambda: pharmacists_by_state(hotline), lambda f: f == expected, within)
    assert found == expected


async def call_state(hotline: Hotline, call_id: str, where: Any, within: float = 5.0) -> Any:
    """The call's record once `where(call)` holds."""

    async def fetch() -> Any:
        return (await hotline.record(call_id))["call"]

    return await poll(fetch, where, within)


async def test_pharmacist_gone_while_ringing_requeues_the_call_at_the_head(
    hotline: Hotline,
) -> None:
    leaving = await hotline.pharmacist("ph-leaving")
    kiosk = await hotline.kiosk("k-1")
    call = await kiosk.place_call(hotline.order())
    await leaving.wait_event("hotline.offer")
    newer = await (await hotline.kiosk("k-2")).place_call(hotline.order())
    await leaving.close()
    await settles_to(hotline, {"offline": 1})
    staying = await hotline.pharmacist("ph-staying")
    offered = await staying.wait_event("hotline.offer")
    assert offered["call_id"] == call["call_id"]  # ahead of the newer call
    assert newer["call_id"] != call["call_id"]
    await staying.accept(call["call_id"])
    assert await pharmacists_by_state(hotline) == {"offline": 1, "busy": 1}


async def test_pharmacist_gone_mid_call_ends_it_and_tells_the_kiosk(hotline: Hotline) -> None:
    pharmacist, kiosk, _, _ = await hotline.answered()
    await pharmacist.close()
    ended = await kiosk.wait_event("hotline.call", where=lambda c: c["state"] == "completed")
    assert ended["end_reason"] == "pharmacist_disconnected"
    await settles_to(hotline, {"offline": 1})
    # The kiosk may call again at once.
    await kiosk.place_call(hotline.order())


async def test_pharmacist_gone_in_wrap_up_or_available_is_offline(hotline: Hotline) -> None:
    first = await hotline.pharmacist("ph-1")
    second = await hotline.pharmacist("ph-2", available=False)
    kiosk = await hotline.kiosk("k-1")
    call = await kiosk.place_call(hotline.order())
    await first.wait_event("hotline.offer")
    await first.accept(call["call_id"])
    await first.call("hotline.end")
    await first.wait_event("hotline.presence", where=lambda p: p["state"] == "wrap_up")
    await first.close()
    await second.close()
    await settles_to(hotline, {"offline": 2})


async def test_kiosk_back_within_grace_keeps_its_place(hotline: Hotline) -> None:
    token, _ = await hotline.registered_kiosk("k-1")
    kiosk = await hotline.connect(token)
    call = await kiosk.place_call(hotline.order())
    await kiosk.close()
    again = await hotline.connect(token)
    resumed = await again.call("hotline.resume")
    assert resumed["call"]["call_id"] == call["call_id"]
    assert resumed["call"]["kiosk_connected"] is True
    pharmacist = await hotline.pharmacist("ph-1")
    await pharmacist.wait_event("hotline.offer", within=5)
    await pharmacist.accept(call["call_id"])
    await again.wait_event("hotline.call", where=lambda c: c["state"] == "connected")
    events = [e["action"] for e in (await hotline.record(call["call_id"]))["events"]]
    assert "kiosk_detached" in events


async def test_kiosk_gone_while_queued_abandons_after_the_grace(hotline: Hotline) -> None:
    kiosk = await hotline.kiosk("k-1")
    call = await kiosk.place_call(hotline.order())
    await kiosk.close()
    await call_state(hotline, call["call_id"], lambda c: c["kiosk_connected"] is False)
    record = await call_state(hotline, call["call_id"], lambda c: c["state"] != "queued")
    assert (record["state"], record["end_reason"]) == ("abandoned", "kiosk_disconnected")


async def test_kiosk_gone_while_ringing_frees_the_pharmacist(hotline: Hotline) -> None:
    pharmacist, kiosk, call = await hotline.ringing()
    await kiosk.close()
    # Accepting within the grace still works: the kiosk may come back. Here it does not.
    withdrawn = await pharmacist.wait_event("hotline.offer_withdrawn", within=5)
    assert withdrawn["call_id"] == call["call_id"]
    assert withdrawn["reason"] in ("abandoned", "ring_timeout")
    presence = await pharmacist.call("hotline.presence", {"state": "available"})
    assert presence["state"] == "available"
    await settles_to(hotline, {"available": 1})


async def test_kiosk_gone_mid_call_completes_after_the_grace(hotline: Hotline) -> None:
    pharmacist, kiosk, _, _ = await hotline.answered()
    await kiosk.close()
    ended = await pharmacist.wait_event(
        "hotline.call", where=lambda c: c["state"] == "completed", within=5
    )
    assert ended["end_reason"] == "kiosk_disconnected"
    await pharmacist.wait_event("hotline.presence", where=lambda p: p["state"] == "wrap_up")
    await pharmacist.wait_event("hotline.presence", where=lambda p: p["state"] == "available")


async def test_a_second_console_replaces_the_first(hotline: Hotline) -> None:
    first = await hotline.pharmacist("ph-1")
    second = await hotline.pharmacist("ph-1", available=False)
    await first.wait_event("hotline.replaced")
    presence = await second.wait_event("hotline.presence")
    assert presence["state"] == "available"  # the state carries over to the new console
    kiosk = await hotline.kiosk("k-1")
    await kiosk.place_call(hotline.order())
    await second.wait_event("hotline.offer")
    await settles_to(hotline, {"ringing": 1})
