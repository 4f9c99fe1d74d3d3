"""SubscriberTrack: keyframe gate, bounded queue, continuous timestamps across rebinds."""

from __future__ import annotations

import asyncio
from typing import Any

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from careline.media.keyframes import KeyframeThrottle, is_keyframe
from careline.media.subscriber_track import ForwardedFrame, SubscriberTrack

VP8_KEY = b"\x10\x02\x00\x9d\x01\x2a" + b"k" * 10
VP8_DELTA = b"\x31\x02\x00" + b"d" * 10


async def next_packet(track: SubscriberTrack) -> av.Packet[Any]:
    item = await track.recv()
    assert isinstance(item, av.Packet)
    return item


def frame(ts: int, key: bool, tag: bytes = b"") -> ForwardedFrame:
    return ForwardedFrame("vp8", (VP8_KEY if key else VP8_DELTA) + tag, ts, key)


def test_keyframe_detection() -> None:
    assert is_keyframe("vp8", VP8_KEY)
    assert not is_keyframe("vp8", VP8_DELTA)
    assert is_keyframe("h264", b"\x00\x00\x00\x01\x67sps\x00\x00\x00\x01\x68pps\x00\x00\x01\x65idr")
    assert not is_keyframe("h264", b"\x00\x00\x00\x01\x41slice")
    assert is_keyframe("opus", b"\x01")


def test_throttle_allows_one_request_per_interval() -> None:
    now = [0.0]
    throttle = KeyframeThrottle(0.5, clock=lambda: now[0])
    assert throttle.allow()
    assert not throttle.allow()
    now[0] = 0.49
    assert not throttle.allow()
    now[0] = 0.5
    assert throttle.allow()
    assert (throttle.requested, throttle.sent) == (4, 2)


async def test_video_starts_on_a_keyframe() -> None:
    track = SubscriberTrack("video", 90_000, capacity=8)
    track.push(frame(0, key=False))
    assert track.stats.gated == 1
    track.push(frame(3000, key=True))
    track.push(frame(6000, key=False))
    first, second = await next_packet(track), await next_packet(track)
    assert bytes(first) == VP8_KEY
    assert bytes(second) == VP8_DELTA
    assert first.pts is not None
    assert second.pts is not None
    assert second.pts - first.pts == 3000


async def test_a_slow_subscriber_drops_to_the_next_keyframe() -> None:
    asked: list[bool] = []
    track = SubscriberTrack("video", 90_000, capacity=3)
    track.on_keyframe_needed = lambda: asked.append(True)
    track.push(frame(0, key=True))
    for i in range(1, 4):
        track.push(frame(i * 3000, key=False, tag=bytes([i])))
    # The queue was full: everything queued was dropped and a keyframe requested.
    assert asked == [True]
    assert track.waiting_for_keyframe
    track.push(frame(5 * 3000, key=False))
    track.push(frame(6 * 3000, key=True, tag=b"again"))
    packet = await next_packet(track)
    assert bytes(packet) == VP8_KEY + b"again"
    assert track.stats.dropped == 4


async def test_audio_drops_its_oldest_frame_when_full() -> None:
    track = SubscriberTrack("audio", 48_000, capacity=2)
    for i in range(3):
        track.push(ForwardedFrame("opus", bytes([i]), i * 960, True))
    assert [bytes(await next_packet(track)) for _ in range(2)] == [b"\x01", b"\x02"]


async def test_rebind_keeps_the_outbound_timeline_continuous() -> None:
    track = SubscriberTrack("video", 90_000, capacity=8)
    track.push(frame(1_000_000, key=True))
    first = await next_packet(track)
    track.rebind()
    track.push(frame(4_000_000_000, key=True))
    second = await next_packet(track)
    assert first.pts is not None
    assert second.pts is not None
    assert second.pts - first.pts == 3000


async def test_stop_ends_a_waiting_recv() -> None:
    track = SubscriberTrack("video", 90_000, capacity=8)
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await waiting
