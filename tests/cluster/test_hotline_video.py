"""Hotline video across nodes: the call's media lives on the kiosk's node.

A kiosk on node A is answered by the only pharmacist, whose console is on node B. The
pharmacist's `media.start` on B answers `hotline.wrong_node` with A's URL; the client opens a
media-only socket on A and both sides get each other's frames (real aiortc peers). When A is
killed mid-call and the kiosk comes back through C, the pharmacist is told the media moved and
both sides get each other's frames again through C. A node the media moved away from closes its
sessions of the call even while the pharmacist's media-only socket there stays connected.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest

from careline.loadtest.clips import Clip
from careline.loadtest.frame_sink import FrameCounter
from careline.loadtest.hotline_client import HotlineClient, HotlineError
from careline.server.hotline_wiring import order_tokens
from careline.signaling.identity import Role
from tests.cluster.conftest import Cluster
from tests.hotline.conftest import poll

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


async def _connected_call(
    cluster: Cluster, clip: Clip, kiosk_id: str, *, kiosk_on: int, pharmacist_on: int
) -> tuple[HotlineClient, HotlineClient, str, dict[str, Any]]:
    """A connected call whose two sides get each other's frames: the kiosk (entering through
    `kiosk_on`), the pharmacist (through `pharmacist_on`), the kiosk's token and the
    pharmacist's view of the call."""
    kiosk_token = await _kiosk_token(cluster, kiosk_id, on=kiosk_on)
    pharmacist = HotlineClient(
        cluster.urls[pharmacist_on], cluster.token(Role.PHARMACIST, f"ph-{kiosk_id}"), video=clip
    )
    kiosk = HotlineClient(cluster.urls[kiosk_on], kiosk_token, video=clip)
    await pharmacist.connect()
    await pharmacist.available()
    await kiosk.connect()
    order = order_tokens(cluster.settings, time.time).issue(f"ord-{kiosk_id}", 600, ()).token
    placed = await kiosk.place_call(order)
    await pharmacist.wait_event("hotline.offer", within=10)
    accepted = await pharmacist.accept(placed["call_id"])
    await kiosk.wait_event("hotline.call", where=lambda c: c["state"] == "connected")
    await pharmacist.start_media()
    await kiosk.start_media()
    await pharmacist.frames_from(accepted["peer_session_id"], 5, within=20)
    await kiosk.frames_from(accepted["session_id"], 5, within=20)
    return kiosk, pharmacist, kiosk_token, accepted


def _peer_connections(metrics: str) -> int:
    """The media sessions a node holds (its `careline_media_peer_connections`, every state)."""
    prefix = "careline_media_peer_connections{"
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in metrics.splitlines()
        if line.startswith(prefix)
    )


async def test_a_node_the_media_moved_away_from_closes_its_sessions_of_the_call(
    cluster: Cluster, clip: Clip
) -> None:
    kiosk, pharmacist, kiosk_token, call = await _connected_call(
        cluster, clip, "k-away", kiosk_on=0, pharmacist_on=1
    )
    back: HotlineClient | None = None
    try:
        media = pharmacist.media_client
        assert media is not None
        assert _peer_connections(await cluster.text("/metrics", on=0)) == 2

        # The kiosk leaves A and comes back through C (A lives on).
        await kiosk.close()
        back = HotlineClient(cluster.urls[2], kiosk_token, video=clip)
        await back.connect()
        moved = await pharmacist.wait_event("hotline.media_moved", within=10)
        assert moved == {"call_id": call["call_id"]}

        # The pharmacist has not followed yet: its media-only socket on A is still there, but A
        # closed its session of the call at its next sweep.
        await poll(
            functools.partial(cluster.text, "/metrics", on=0),
            lambda metrics: _peer_connections(metrics) == 0,
            within=10,
        )
        assert media.connected

        # Following the move puts both sides in media on C.
        await back.start_media()
        await pharmacist.follow_media()
        assert pharmacist.media_client is not None
        assert pharmacist.media_client.url == cluster.urls[2]
        await back.frames_from(call["session_id"], 5, within=20)
        assert not media.connected  # the old media-only socket was closed
    finally:
        for client in (back, kiosk, pharmacist):
            if client is not None:
                await client.close()


async def test_when_the_kiosks_node_dies_mid_call_the_media_follows_the_kiosk(
    cluster: Cluster, clip: Clip
) -> None:
    a, _, c = cluster.urls
    kiosk, pharmacist, kiosk_token, placed = await _connected_call(
        cluster, clip, "k-move", kiosk_on=0, pharmacist_on=1
    )
    kiosk_session, pharmacist_session = placed["peer_session_id"], placed["session_id"]
    back: HotlineClient | None = None
    try:
        # Node A (the kiosk's, holding the media) dies.
        node_a = next(n for n in cluster.nodes if n.url == a)
        node_a.kill()
        await node_a.process.wait()

        # Once A's lease has run out, B says the media's node is gone (try again later).
        unavailable = await poll(
            lambda: pharmacist.error("media.start"),
            lambda code: code == "hotline.node_unavailable",
            within=20,
        )
        assert unavailable == "hotline.node_unavailable"

        # The kiosk comes back through C, within its reconnect grace: the call goes on there.
        back = HotlineClient(c, kiosk_token, video=clip)
        await back.connect()
        moved = await pharmacist.wait_event("hotline.media_moved", within=10)
        assert moved == {"call_id": placed["call_id"]}

        pharmacist.frames = FrameCounter()
        await back.start_media()
        await pharmacist.follow_media()
        assert pharmacist.media_client is not None
        assert pharmacist.media_client.url == c
        at_kiosk = await back.frames_from(pharmacist_session, 5, within=20)
        at_pharmacist = await pharmacist.frames_from(kiosk_session, 5, within=20)
        assert back.frames.digests(at_kiosk) <= clip.digests()
        assert pharmacist.frames.digests(at_pharmacist) <= clip.digests()

        # It is still the same call, answered once, and it ends normally.
        ended = await pharmacist.call("hotline.end")
        assert ended["call_id"] == placed["call_id"]
        await back.wait_event("hotline.call", where=lambda c: c["state"] == "completed")
    finally:
        for client in (back, kiosk, pharmacist):
            if client is not None:
                await client.close()
