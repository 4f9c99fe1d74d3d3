"""Keyframe detection on encoded frames (VP8 payload header, H264 Annex-B NAL types)."""

from __future__ import annotations

H264_NAL_IDR = 5
_VP8_START_CODE = b"\x9d\x01\x2a"
_START_CODE = b"\x00\x00\x01"


def keyframe_kind(codec: str, data: bytes) -> bool:
    """Whether `data` (one encoded frame of `codec`: "vp8", "h264" or "opus") is a keyframe.

    VP8: the frame tag's P bit is clear and the start code 9d 01 2a follows it. H264: an IDR
    slice (NAL type 5) is present in the Annex-B stream. Opus frames are all independent: True.
    Codec names are matched case-insensitively; an unknown codec raises ValueError.
    """
    name = codec.lower()
    if name == "vp8":
        return len(data) >= 6 and not data[0] & 1 and data[3:6] == _VP8_START_CODE
    if name == "h264":
        return H264_NAL_IDR in h264_nal_types(data)
    if name == "opus":
        return True
    raise ValueError(f"unknown codec {codec!r}")


def h264_nal_types(data: bytes) -> list[int]:
    """The NAL unit types of an Annex-B stream, in order (3- and 4-byte start codes)."""
    types: list[int] = []
    position = data.find(_START_CODE)
    while position != -1 and position + 3 < len(data):
        types.append(data[position + 3] & 0x1F)
        position = data.find(_START_CODE, position + 3)
    return types


def h264_nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B stream without start codes or trailing zero bytes."""
    units: list[bytes] = []
    start = data.find(_START_CODE)
    while start != -1:
        start += 3
        end = data.find(_START_CODE, start)
        unit = data[start:] if end == -1 else data[start:end]
        unit = unit.rstrip(b"\x00")
        if unit:
            units.append(unit)
        start = end
    return units
