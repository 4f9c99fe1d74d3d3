"""A restart with calls in the queue: the records are kept and returning kiosks keep their place."""

from __future__ import annotations

import asyncio
from pathlib import Path

from careline.loadtest.ice import restrict_host_addresses
from tests.hotline.conftest import Hotline, hotline_settings
from tests.support import running_server


async def test_queued_calls_survive_a_restart(tmp_path: Path) -> None:
    restrict_host_addresses(["127.0.0.1"])
    settings = hotline_settings(tmp_path / "data", **{"hotline.reconnect_grace_seconds": 4.0})
    tokens: dict[str, str] = {}
    calls: dict[str, str] = {}
    async with running_server(settings) as server:
        hotline = Hotline(server)
        try:
            ringing_pharmacist = await hotline.pharmacist("ph-old")
            for name in ("k-back", "k-gone", "k-third"):
                tokens[name], _ = await hotline.registered_kiosk(name)
                client = await hotline.connect(tokens[name])
                calls[name] = (await client.place_call(hotline.order()))["call_id"]
            offer = await ringing_pharmacist.wait_event("hotline.offer")
            assert offer["call_id"] == calls["k-back"]  # the first call rings at shutdown
        finally:
            await hotline.close()

    async with running_server(settings) as server:
        hotline = Hotline(server)
        try:
            for name, call_id in calls.items():
                record = await hotline.record(call_id)
                assert record["call"]["state"] in ("queued", "ringing"), name
                assert record["events"][0]["action"] == "enqueued"
            back = await hotline.connect(tokens["k-back"])
            resumed = await back.call("hotline.resume")
            assert resumed["call"]["call_id"] == calls["k-back"]
            # The pharmacist whose console was on the old process is offline now, and the call
            # that rang them is back at the head of the queue.
            pharmacist = await hotline.pharmacist("ph-new")
            offered = await pharmacist.wait_event("hotline.offer", within=5)
            assert offered["call_id"] == calls["k-back"]
            await pharmacist.accept(calls["k-back"])
            stats = (await hotline.rest("GET", "/api/hotline/stats"))[1]
            assert stats["pharmacists"]["offline"] == 1
            # Kiosks that did not come back within the grace are abandoned, records kept.
            for name in ("k-gone", "k-third"):
                for _ in range(200):
                    record = await hotline.record(calls[name])
                    if record["call"]["state"] != "queued":
                        break
                    await asyncio.sleep(0.05)
                assert (record["call"]["state"], record["call"]["end_reason"]) == (
                    "abandoned",
                    "kiosk_disconnected",
                ), name
        finally:
            await hotline.close()
