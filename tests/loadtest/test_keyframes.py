"""Keyframe detection on VP8 frame tags and H264 Annex-B NAL types."""

from __future__ import annotations

import pytest

from careline.loadtest.clips import Clip
from careline.loadtest.keyframes import h264_nal_types, h264_nal_units, keyframe_kind

SPS = b"\x67\x42\xc0\x1e\xda"
PPS = b"\x68\xce\x3c\x80"
IDR = b"\x65\x88\x84\x00\x33"
SLICE = b"\x41\x9a\x24\x6c"


def annex_b(*units: bytes, start: bytes = b"\x00\x00\x00\x01") -> bytes:
    return b"".join(start + unit for unit in units)


def test_vp8_keyframe_needs_a_clear_p_bit_and_the_start_code() -> None:
    assert keyframe_kind("vp8", b"\x10\x02\x00\x9d\x01\x2a\x40\x01")
    assert not keyframe_kind("vp8", b"\x11\x02\x00\x9d\x01\x2a\x40\x01")  # P bit set
    assert not keyframe_kind("vp8", b"\x10\x02\x00\x00\x00\x00\x40\x01")  # no start code
    assert not keyframe_kind("vp8", b"\x10\x02")  # truncated


def test_h264_keyframe_is_an_idr_nal_anywhere_in_the_access_unit() -> None:
    assert keyframe_kind("h264", annex_b(SPS, PPS, IDR))
    assert keyframe_kind("h264", annex_b(SPS, PPS, IDR, start=b"\x00\x00\x01"))
    assert not keyframe_kind("h264", annex_b(SLICE))
    assert not keyframe_kind("h264", annex_b(SPS, PPS))
    assert not keyframe_kind("h264", b"")


def test_codec_names_are_case_insensitive_and_opus_is_always_key() -> None:
    assert keyframe_kind("VP8", b"\x10\x02\x00\x9d\x01\x2a")
    assert keyframe_kind("H264", annex_b(IDR))
    assert keyframe_kind("opus", b"\xfc\x00")
    with pytest.raises(ValueError, match="unknown codec"):
        keyframe_kind("av1", b"\x00")


def test_h264_nal_parsing_handles_both_start_codes_and_trailing_zeros() -> None:
    stream = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00\x00\x00\x01" + IDR

    assert h264_nal_types(stream) == [7, 8, 5]
    assert h264_nal_units(stream) == [SPS, PPS, IDR]


def test_detection_agrees_with_the_encoders(vp8_clip: Clip, h264_clip: Clip) -> None:
    for clip in (vp8_clip, h264_clip):
        detected = tuple(
            index
            for index, frame in enumerate(clip.frames)
            if keyframe_kind(clip.codec, frame.data)
        )
        assert detected == (0, 30)
