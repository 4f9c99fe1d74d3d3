"""Synthetic clips: distinct frames, keyframes where asked, Annex-B H264, a cache that reloads."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Literal

import pytest

from careline.loadtest import clips
from careline.loadtest.clips import Clip, audio_clip, video_clip
from careline.loadtest.errors import BlockingCallError
from careline.loadtest.keyframes import h264_nal_types


def small_video(
    cache_dir: Path,
    codec: Literal["vp8", "h264"] = "vp8",
    *,
    width: int = 160,
    fps: int = 30,
    bitrate: int = 200_000,
    seconds: float = 1.0,
    keyframe_interval: int = 10,
) -> Clip:
    """160x120, 1 s: small enough to encode in a test."""
    return video_clip(
        codec, width, 120, fps, bitrate, seconds, keyframe_interval, cache_dir=cache_dir
    )


def assert_distinct(clip: Clip) -> None:
    assert len(clip.digests()) == len(clip.frames)


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_video_clip_has_distinct_frames_and_keyframes_every_interval(
    tmp_path: Path, codec: Literal["vp8", "h264"]
) -> None:
    clip = small_video(tmp_path, codec, keyframe_interval=10)

    assert (clip.kind, clip.codec, clip.width, clip.height, clip.fps) == (
        "video",
        codec,
        160,
        120,
        30,
    )
    assert clip.time_base == Fraction(1, 90_000)
    assert clip.frame_duration == 3000
    assert clip.frame_interval == pytest.approx(1 / 30)
    assert len(clip.frames) == 30
    assert clip.duration == pytest.approx(1.0)
    assert [frame.pts for frame in clip.frames] == [i * 3000 for i in range(30)]
    assert clip.keyframe_indices == (0, 10, 20)
    assert_distinct(clip)


def test_h264_clip_is_annex_b_with_parameter_sets_before_every_idr(tmp_path: Path) -> None:
    clip = small_video(tmp_path, "h264", keyframe_interval=10)

    assert clip.mime_type == "video/H264"
    for frame in clip.frames:
        assert frame.data.startswith(b"\x00\x00\x00\x01")
        types = h264_nal_types(frame.data)
        # aiortc's depayloader rebuilds each NAL behind a 4-byte start code: so must the clip.
        assert frame.data.count(b"\x00\x00\x01") == frame.data.count(b"\x00\x00\x00\x01")
        assert len(types) == frame.data.count(b"\x00\x00\x00\x01")
        assert not frame.data.endswith(b"\x00")
        if frame.keyframe:
            before_idr = types[: types.index(5)]
            assert 7 in before_idr
            assert 8 in before_idr
        else:
            assert 5 not in types
            assert 7 not in types
    # constrained baseline: profile_idc 66, constraint_set1
    sps = clip.frames[0].data[5:8]
    assert sps[0] == 66
    assert sps[1] & 0x40


def test_vp8_clip_frames_carry_the_vp8_frame_tag(tmp_path: Path) -> None:
    clip = small_video(tmp_path, "vp8", keyframe_interval=10)

    assert clip.mime_type == "video/VP8"
    for frame in clip.frames:
        assert bool(frame.data[0] & 1) is not frame.keyframe
        assert (frame.data[3:6] == b"\x9d\x01\x2a") is frame.keyframe


def test_audio_clip_is_opus_in_distinct_20_ms_frames(tmp_path: Path) -> None:
    clip = audio_clip(seconds=1.0, cache_dir=tmp_path)

    assert (clip.kind, clip.codec, clip.mime_type) == ("audio", "opus", "audio/opus")
    assert (clip.width, clip.height, clip.fps) == (None, None, 50)
    assert clip.time_base == Fraction(1, 48_000)
    assert clip.frame_duration == 960
    assert clip.frame_interval == pytest.approx(0.02)
    assert 50 <= len(clip.frames) <= 51  # the encoder's flush may add one frame
    assert all(frame.keyframe for frame in clip.frames)
    assert [frame.pts for frame in clip.frames] == [i * 960 for i in range(len(clip.frames))]
    assert_distinct(clip)


def test_cache_reloads_identical_clips_without_encoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = small_video(tmp_path, "vp8")
    audio = audio_clip(seconds=1.0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.msgpack"))) == 2

    def refuse(*args: object) -> None:
        raise AssertionError("encoded although the clip is cached")

    monkeypatch.setattr(clips, "_encode_video", refuse)
    monkeypatch.setattr(clips, "_encode_audio", refuse)
    assert small_video(tmp_path, "vp8") == video
    assert audio_clip(seconds=1.0, cache_dir=tmp_path) == audio


def test_cache_is_keyed_by_parameters(tmp_path: Path) -> None:
    first = small_video(tmp_path, "vp8", keyframe_interval=10)
    second = small_video(tmp_path, "vp8", keyframe_interval=15)

    assert second.keyframe_indices == (0, 15)
    assert first.keyframe_indices == (0, 10, 20)
    assert len(list(tmp_path.glob("*.msgpack"))) == 2


def test_an_unreadable_cache_file_is_encoded_again(tmp_path: Path) -> None:
    clip = audio_clip(seconds=0.2, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.msgpack")
    path.write_bytes(b"\xc1 not msgpack")

    again = audio_clip(seconds=0.2, cache_dir=tmp_path)

    assert len(again.frames) == len(clip.frames)
    assert clips._load(path) is not None


@pytest.mark.parametrize(
    "overrides",
    [{"fps": 7}, {"width": 161}, {"seconds": 0.0}, {"bitrate": 0}, {"keyframe_interval": 0}],
)
def test_video_clip_rejects_bad_parameters(tmp_path: Path, overrides: dict[str, int]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        small_video(tmp_path, "vp8", **overrides)
    assert list(tmp_path.iterdir()) == []


async def test_clips_refuse_the_event_loop_and_work_in_a_thread(tmp_path: Path) -> None:
    with pytest.raises(BlockingCallError):
        audio_clip(seconds=0.2, cache_dir=tmp_path)
    with pytest.raises(BlockingCallError):
        video_clip(cache_dir=tmp_path)

    clip = await asyncio.to_thread(audio_clip, 0.2, tmp_path)

    assert len(clip.frames) >= 10
