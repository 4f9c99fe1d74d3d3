"""ClipTrack: packets paced in real time, looping with growing pts, keyframe skips, a record."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest
from aiortc.mediastreams import MediaStreamError

from careline.loadtest.clip_track import ClipTrack
from careline.loadtest.clips import Clip, EncodedFrame
from careline.loadtest.frame_digest import frame_digest

KEY, DELTA = True, False


def tiny_clip(*keyframes: bool) -> Clip:
    """A hand-made 100 fps clip (frames 10 ms apart) with the given keyframe pattern."""
    frames = tuple(
        EncodedFrame(data=bytes([index, key]) * 8, keyframe=key, pts=index * 900)
        for index, key in enumerate(keyframes)
    )
    return Clip(
        kind="video",
        codec="vp8",
        time_base=Fraction(1, 90_000),
        frame_duration=900,
        frames=frames,
        fps=100,
        bitrate=1,
        width=2,
        height=2,
    )


async def test_packets_carry_the_clip_bytes_with_pts_growing_across_loops() -> None:
    clip = tiny_clip(KEY, DELTA, DELTA)
    track = ClipTrack(clip)

    packets = [await track.recv() for _ in range(7)]

    assert track.kind == "video"
    assert [bytes(packet) for packet in packets] == [
        clip.frames[index % 3].data for index in range(7)
    ]
    assert [packet.pts for packet in packets] == [index * 900 for index in range(7)]
    assert {packet.time_base for packet in packets} == {Fraction(1, 90_000)}
    assert [packet.is_keyframe for packet in packets] == [KEY, DELTA, DELTA] * 2 + [KEY]
    assert track.frames_sent == 7


async def test_frames_are_paced_one_interval_apart() -> None:
    track = ClipTrack(tiny_clip(KEY, DELTA, DELTA, DELTA))
    await track.recv()
    started = time.monotonic()

    for _ in range(10):
        await track.recv()

    assert time.monotonic() - started >= 10 * 0.010 - 0.002
    assert track.max_lateness < 0.1


async def test_a_keyframe_request_skips_to_the_next_keyframe() -> None:
    clip = tiny_clip(KEY, DELTA, DELTA, KEY, DELTA, DELTA)
    track = ClipTrack(clip)
    await track.recv()  # frame 0

    track.request_keyframe()
    skipped = await track.recv()
    following = await track.recv()
    track.request_keyframe()
    wrapped = await track.recv()

    assert bytes(skipped) == clip.frames[3].data
    assert bytes(following) == clip.frames[4].data
    assert bytes(wrapped) == clip.frames[0].data  # past the last keyframe: wrap around
    assert [skipped.pts, following.pts, wrapped.pts] == [900, 1800, 2700]
    assert track.keyframe_requests == 2


async def test_the_send_record_is_bounded_and_keyed_by_digest() -> None:
    clip = tiny_clip(KEY, DELTA, DELTA, DELTA, DELTA)
    track = ClipTrack(clip, record_capacity=3)
    before = time.monotonic()

    for _ in range(5):
        await track.recv()

    digests = [frame_digest(frame.data) for frame in clip.frames]
    assert [track.sent_at(digest) is None for digest in digests] == [True, True] + [False] * 3
    sent = [track.sent_at(digest) for digest in digests[2:]]
    assert all(value is not None and value >= before for value in sent)


async def test_a_stopped_track_ends() -> None:
    track = ClipTrack(tiny_clip(KEY))
    track.stop()

    with pytest.raises(MediaStreamError):
        await track.recv()


def test_the_record_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="record_capacity"):
        ClipTrack(tiny_clip(KEY), record_capacity=0)
