"""ReceiverTap and FrameCounter, driven the way aiortc drives a decoder queue."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from careline.loadtest.frame_digest import frame_digest
from careline.loadtest.frame_sink import FrameCounter, ReceiverTap

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96)
KEYFRAME = b"\x10\x02\x00\x9d\x01\x2a\x40\x01"
DELTA = b"\x11\x02\x00\x00\x00\x00"


async def test_the_tap_hands_frames_to_the_callback_and_ends_the_track_once() -> None:
    received: list[tuple[str, bytes, int]] = []
    ends: list[None] = []
    track_queue: asyncio.Queue[object] = asyncio.Queue()
    tap = ReceiverTap(lambda *frame: received.append(frame), lambda: ends.append(None), track_queue)

    tap.put((VP8, JitterFrame(KEYFRAME, 0)))
    tap.put((VP8, JitterFrame(DELTA, 3000)))
    tap.put(None)
    tap.put(None)
    tap.put((VP8, JitterFrame(DELTA, 6000)))  # after the end: ignored

    assert received == [("vp8", KEYFRAME, 0), ("vp8", DELTA, 3000)]
    assert tap.frames == 2
    assert tap.ended
    assert ends == [None]
    assert track_queue.get_nowait() is None
    assert track_queue.empty()


def test_a_failing_callback_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def explode(codec: str, data: bytes, timestamp: int) -> None:
        raise ZeroDivisionError

    tap = ReceiverTap(explode, None, None)
    with caplog.at_level(logging.ERROR):
        tap.put((VP8, JitterFrame(DELTA, 0)))

    assert tap.frames == 1
    assert "frame sink callback failed" in caplog.text


async def test_the_counter_counts_per_key_and_keeps_bounded_arrivals() -> None:
    counter = FrameCounter(capacity=2)
    on_video = counter.on_frame_for("video")

    on_video("vp8", KEYFRAME, 0)
    on_video("vp8", DELTA, 3000)
    on_video("vp8", DELTA + b"\x01", 6000)
    counter.record("audio", "opus", b"\xfc\x01", 0)

    assert counter.keys() == ("video", "audio")
    assert (counter.count("video"), counter.count("audio"), counter.count("none")) == (3, 1, 0)
    arrivals = counter.arrivals("video")
    assert [arrival.timestamp for arrival in arrivals] == [3000, 6000]
    assert [arrival.keyframe for arrival in arrivals] == [False, False]
    assert counter.arrivals("audio")[0].keyframe
    assert counter.digests("video") == {frame_digest(DELTA), frame_digest(DELTA + b"\x01")}
    sent = {frame_digest(DELTA): arrivals[0].arrived_at - 0.25}
    assert counter.latencies("video", sent.get) == [pytest.approx(0.25)]


async def test_waiting_for_a_count_wakes_when_it_is_reached() -> None:
    counter = FrameCounter()
    waiter = asyncio.ensure_future(counter.wait_for("video", 2))
    await asyncio.sleep(0)
    counter.record("video", "vp8", KEYFRAME, 0)
    await asyncio.sleep(0)
    assert not waiter.done()

    counter.record("video", "vp8", DELTA, 3000)
    async with asyncio.timeout(1):
        await waiter
    await counter.wait_for("video", 1)  # already reached: returns at once


async def test_a_cancelled_wait_leaves_no_waiter_behind() -> None:
    counter = FrameCounter()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await counter.wait_for("video", 1)

    assert counter._waiters == []
