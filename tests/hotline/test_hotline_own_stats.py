"""A pharmacist's own figures (`mine` in `GET /api/hotline/stats`) from the call records."""

from __future__ import annotations

import asyncio
from typing import Any

from careline.signaling.identity import Role
from tests.hotline.conftest import Hotline


async def _mine(hotline: Hotline, sub: str) -> dict[str, Any]:
    status, body = await hotline.rest(
        "GET", "/api/hotline/stats", token=hotline.server.token(Role.PHARMACIST, sub)
    )
    assert status == 200, body
    return dict(body["mine"])


async def test_pharmacist_figures_count_their_answers_and_misses_only(hotline: Hotline) -> None:
    first = await hotline.pharmacist("ph-1")
    second = await hotline.pharmacist("ph-2", available=False)

    # ph-1 answers a call and talks for a moment.
    kiosk = await hotline.kiosk("k-1")
    answered = await kiosk.place_call(hotline.order())
    await first.wait_event("hotline.offer", where=lambda o: o["call_id"] == answered["call_id"])
    await first.accept(answered["call_id"])
    await asyncio.sleep(0.3)
    await first.call("hotline.end")
    mine = await _mine(hotline, "ph-1")
    assert (mine["offered"], mine["answered"], mine["missed"], mine["completed"]) == (1, 1, 0, 1)
    assert mine["talk_seconds"] >= 0.3
    assert mine["average_handle_seconds"] == mine["talk_seconds"]

    # ph-1 declines the next call (after wrap-up); it goes to ph-2, who answers it.
    declined = await (await hotline.kiosk("k-2")).place_call(hotline.order())
    await first.wait_event("hotline.offer", where=lambda o: o["call_id"] == declined["call_id"])
    await second.available()
    await first.call("hotline.decline", {"call_id": declined["call_id"]})
    await second.wait_event("hotline.offer", where=lambda o: o["call_id"] == declined["call_id"])
    await second.accept(declined["call_id"])

    # ph-1 lets a third call ring out (and is set away).
    rang_out = await (await hotline.kiosk("k-3")).place_call(hotline.order())
    await first.wait_event("hotline.offer", where=lambda o: o["call_id"] == rang_out["call_id"])
    withdrawn = await first.wait_event(
        "hotline.offer_withdrawn", where=lambda w: w["call_id"] == rang_out["call_id"]
    )
    assert withdrawn["reason"] == "ring_timeout"

    mine = await _mine(hotline, "ph-1")
    assert (mine["offered"], mine["answered"], mine["missed"], mine["completed"]) == (3, 1, 2, 1)
    theirs = await _mine(hotline, "ph-2")
    assert (theirs["offered"], theirs["answered"], theirs["missed"]) == (1, 1, 0)
    assert (theirs["completed"], theirs["talk_seconds"]) == (0, 0.0)
    assert theirs["average_handle_seconds"] is None
    # Someone who took no call has zeros; an admin gets no `mine`.
    assert (await _mine(hotline, "ph-3"))["offered"] == 0
    status, stats = await hotline.rest("GET", "/api/hotline/stats")
    assert status == 200
    assert stats["mine"] is None
    assert (stats["calls"], stats["answered"]) == (3, 2)
