"""Attachment types are judged by content: JPEG, PNG, HEIC/HEIF; anything else is refused."""

from __future__ import annotations

import struct

import pytest

from careline.signaling.attachment import HEIC, HEIF, JPEG, PNG, content_type_of, sniff
from careline.signaling.errors import UnsupportedMedia


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\x00" * 64


PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 40
JPEG_BYTES = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (JPEG_BYTES, JPEG),
        (PNG_BYTES, PNG),
        (ftyp(b"heic", b"mif1", b"heic"), HEIC),
        (ftyp(b"mif1", b"heic"), HEIC),
        (ftyp(b"mif1", b"miaf"), HEIF),
    ],
)
def test_images_are_recognised(data: bytes, expected: str) -> None:
    assert sniff(data) == expected
    assert content_type_of(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"\x00" * 40,  # a PDF, whatever its name says
        b"",
        b"GIF89a" + b"\x00" * 40,
        PNG_BYTES[:20],  # truncated
        ftyp(b"avif", b"mif1", b"avif"),
        ftyp(b"isom", b"mp41"),  # an MP4 video
        b"\x00\x00\x00\x05ftypheic",  # a box that claims less than its header
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    ],
)
def test_anything_else_is_refused(data: bytes) -> None:
    assert sniff(data) is None
    with pytest.raises(UnsupportedMedia) as caught:
        content_type_of(data)
    assert caught.value.code == "thread.unsupported_attachment"
