"""Hotline video across nodes: the call's media lives on the kiosk's node.

A kiosk on node A is answered by the only pharmacist, whose console is on node B. The
pharmacist's `media.start` on B answers `hotline.wrong_node` with A's URL; the client opens a
media-only socket on A and both sides get each other's frames (real aiortc peers).
"""

from __future__ import annotations

import time

import pytest

from careline.loadtest.clips import Clip
from careline.loadtest.hotline_client import HotlineClient, HotlineError
from careline.server.hotline_wiring import order_tokens
from careline.signaling.identity import Role
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.redis


async def _kiosk_token(cluster: Cluster, kiosk_id: str, *, on: int) -> str:
    registered = await cluster.rest("POST", "/api/kiosks", {"kiosk_id": kiosk_id})
    async with cluster.http.post(
        f"{cluster.urls[on]}/api/kiosks/{kiosk_id}/token", json={"secret": registered["secret"]}
    ) as response:
        assert response.status == 201
        return str((await response.json())["token"])


async def test_a_kiosk_on_node_a_and_a_pharmacist_on_node_b_see_each_other(
    cluster: Cluster, clip: Clip
) -> None:
    a, b = cluster.urls[0], cluster.urls[1]
    pharmacist = HotlineClient(b, cluster.token(Role.PHARMACIST, "ph-b"), video=clip)
    kiosk = HotlineClient(a, await _kiosk_token(cluster, "k-a", on=0), video=clip)
    try:
        await pharmacist.connect()
        await pharmacist.available()
        await kiosk.connect()
        order = order_tokens(cluster.settings, time.time).issue("ord-1", 600, ()).token
        placed = await kiosk.place_call(order)
        offer = await pharmacist.wait_event("hotline.offer", within=10)
        assert offer["call_id"] == placed["call_id"]
        accepted = await pharmacist.accept(placed["call_id"])
        connected = await kiosk.wait_event(
            "hotline.call", where=lambda c: c["state"] == "connected"
        )
        kiosk_session, pharmacist_session = connected["session_id"], accepted["session_id"]

        # On B the call's media is refused with A's URL...
        with pytest.raises(HotlineError) as refused:
            await pharmacist.call("media.start")
        assert refused.value.code == "hotline.wrong_node"
        assert refused.value.details["node_url"] == a

        # ...so the client does its media through a media-only socket on A.
        await pharmacist.start_media()
        await kiosk.start_media()
        media = pharmacist.media_client
        assert media is not None
        assert media.url == a
        at_kiosk = await kiosk.frames_from(pharmacist_session, 10, within=20)
        at_pharmacist = await pharmacist.frames_from(kiosk_session, 10, within=20)
        digests = clip.digests()
        assert kiosk.frames.digests(at_kiosk) <= digests
        assert pharmacist.frames.digests(at_pharmacist) <= digests

        # The media-only socket replaced nothing and may do nothing but media.
        assert pharmacist.connected
        assert not pharmacist.pushes("hotline.replaced")
        assert await media.error("hotline.presence", {"state": "away"}) == "hotline.not_connected"
        assert await media.error("hotline.end") == "hotline.not_connected"

        # The console's hang-up on B ends the call for the kiosk on A.
        await pharmacist.call("hotline.end")
        await kiosk.wait_event("hotline.call", where=lambda c: c["state"] == "completed")
    finally:
        await kiosk.close()
        await pharmacist.close()
