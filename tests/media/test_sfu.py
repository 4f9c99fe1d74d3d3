"""The SFU with real aiortc peers on loopback exchanging real encoded VP8 (no decoding anywhere)."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from careline.loadtest.clips import Clip, video_clip
from careline.loadtest.ice import restrict_host_addresses
from careline.media.seams import check_aiortc
from careline.media.sfu import Sfu, SfuConfig
from tests.media.peers import Peer, Router
from tests.support import open_fds

ROOM = "room-1"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    cache = Path(tmp_path_factory.mktemp("clips"))
    return video_clip("vp8", width=320, height=240, bitrate=300_000, seconds=2.0, cache_dir=cache)


@pytest.fixture
async def sfu() -> AsyncIterator[tuple[Sfu, Router]]:
    restrict_host_addresses(["127.0.0.1"])
    router = Router()
    instance = Sfu(SfuConfig(keyframe_interval=0.5), router)
    try:
        yield instance, router
    finally:
        await instance.close()
        for peer in router.peers.values():
            await peer.close()


async def add_peer(setup: tuple[Sfu, Router], session_id: str, clip: Clip | None) -> Peer:
    sfu, router = setup
    peer = Peer(sfu, ROOM, session_id, clip)
    router.peers[session_id] = peer
    await peer.join()
    return peer


async def frames_from(peer: Peer, publisher: str, count: int, within: float = 8.0) -> str:
    """Wait until `peer` got `count` frames of `publisher`'s video; returns the m-line."""
    async with asyncio.timeout(within):
        mid = await peer.wait_mid(publisher)
        await peer.frames.wait_for(mid, count)
    return mid


def test_the_aiortc_seams_are_present() -> None:
    check_aiortc()


async def test_two_participants_receive_each_others_frames_byte_identical(
    sfu: tuple[Sfu, Router], clip: Clip
) -> None:
    alice = await add_peer(sfu, "alice", clip)
    bob = await add_peer(sfu, "bob", clip)
    mid_at_bob = await frames_from(bob, "alice", 30)
    mid_at_alice = await frames_from(alice, "bob", 30)
    clip_digests = clip.digests()
    for peer, mid, sender in ((bob, mid_at_bob, alice), (alice, mid_at_alice, bob)):
        received = peer.frames.arrivals(mid)
        assert {a.digest for a in received} <= clip_digests  # byte-identical, nothing re-encoded
        assert received[0].keyframe  # every subscriber starts on a keyframe
        assert sender.video is not None
        latencies = peer.frames.latencies(mid, sender.video.sent_at)
        assert len(latencies) >= 25
    # No decoder thread anywhere: the server forwards, the peers tap.
    assert not [t for t in threading.enumerate() if t.name.endswith("-decoder")]


async def test_a_third_participant_gets_both_with_a_keyframe_within_a_second(
    sfu: tuple[Sfu, Router], clip: Clip
) -> None:
    await add_peer(sfu, "alice", clip)
    await add_peer(sfu, "bob", clip)
    await sfu[1].settle()
    loop = asyncio.get_running_loop()
    joined_at = loop.time()
    carol = await add_peer(sfu, "carol", clip)
    for publisher in ("alice", "bob"):
        mid = await frames_from(carol, publisher, 1, within=5)
        first = carol.frames.arrivals(mid)[0]
        assert first.keyframe
    # Keyframes were requested at subscribe time, not waited for (the clip has one per second).
    assert loop.time() - joined_at < 1.0 + 0.5
    alice, bob = sfu[1].peers["alice"], sfu[1].peers["bob"]
    await frames_from(alice, "carol", 10)
    await frames_from(bob, "carol", 10)


async def test_when_one_leaves_the_others_continue(sfu: tuple[Sfu, Router], clip: Clip) -> None:
    alice = await add_peer(sfu, "alice", clip)
    bob = await add_peer(sfu, "bob", clip)
    carol = await add_peer(sfu, "carol", clip)
    await frames_from(alice, "carol", 5)
    await sfu[0].close_session("carol")
    await carol.close()
    del sfu[1].peers["carol"]
    mid = await frames_from(alice, "bob", 1)
    before = alice.frames.count(mid)
    await asyncio.sleep(0.5)
    assert alice.frames.count(mid) > before + 5
    mid = await frames_from(bob, "alice", 1)
    before = bob.frames.count(mid)
    await asyncio.sleep(0.5)
    assert bob.frames.count(mid) > before + 5
    # A newcomer reuses the freed slot: no renegotiation needed for it.
    dave = await add_peer(sfu, "dave", clip)
    await frames_from(alice, "dave", 5)
    await frames_from(dave, "alice", 5)


async def test_reopening_a_session_replaces_the_old_one(
    sfu: tuple[Sfu, Router], clip: Clip
) -> None:
    alice = await add_peer(sfu, "alice", clip)
    bob = await add_peer(sfu, "bob", clip)
    await frames_from(alice, "bob", 5)
    await bob.close()
    bob_again = Peer(sfu[0], ROOM, "bob", clip)
    sfu[1].peers["bob"] = bob_again
    await bob_again.join()
    assert sfu[0].session_count == 2
    await frames_from(bob_again, "alice", 10)
    mid = await frames_from(alice, "bob", 1)
    before = alice.frames.count(mid)
    await asyncio.sleep(0.6)
    assert alice.frames.count(mid) > before + 5


async def test_the_transcoding_baseline_really_reencodes(clip: Clip) -> None:
    restrict_host_addresses(["127.0.0.1"])
    router = Router()
    instance = Sfu(SfuConfig(forwarding="transcode"), router)
    try:
        await add_peer((instance, router), "alice", clip)
        bob = await add_peer((instance, router), "bob", None)
        mid = await frames_from(bob, "alice", 10, within=15)
        received = {a.digest for a in bob.frames.arrivals(mid)}
        assert not received & clip.digests()  # decoded and encoded again: new bytes
        assert [t for t in threading.enumerate() if t.name == "video-decoder"]
    finally:
        await instance.close()
        for peer in router.peers.values():
            await peer.close()


@pytest.mark.timeout(300)
async def test_joining_and_leaving_200_times_leaks_nothing(clip: Clip) -> None:
    restrict_host_addresses(["127.0.0.1"])
    router = Router()
    # Short keyframe throttle: each guest waits for its keyframe, not for the throttle.
    instance = Sfu(SfuConfig(keyframe_interval=0.05), router)
    setup = (instance, router)
    try:
        await add_peer(setup, "host", clip)

        async def cycle(i: int) -> None:
            peer = Peer(instance, ROOM, f"guest-{i}", None)
            router.peers[peer.session_id] = peer
            await peer.join()
            await frames_from(peer, "host", 1)  # really connected, media flowing
            await instance.close_session(peer.session_id)
            await peer.close()
            del router.peers[peer.session_id]

        for i in range(5):  # warm up lazily created pools and caches
            await cycle(i)
        gc.collect()
        tasks, fds, threads = len(asyncio.all_tasks()), open_fds(), threading.active_count()
        for i in range(5, 205):
            await cycle(i)
        await router.settle()
        await asyncio.sleep(0.5)
        gc.collect()
        assert instance.session_count == 1
        assert len(asyncio.all_tasks()) <= tasks
        assert open_fds() <= fds
        assert threading.active_count() <= threads
    finally:
        await instance.close()
        for peer in router.peers.values():
            await peer.close()
