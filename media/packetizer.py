"""RTP payloads of a forwarded frame, cut once per publication and shared by every subscriber.

aiortc's encoders know how to packetize an encoded frame (`pack()`): VP8 adds its payload
descriptor with a PictureID, H264 splits Annex-B NAL units into FU-A/STAP-A, Opus passes the
frame through. Doing it once per frame instead of once per subscriber is what makes fan-out cheap.
The PictureID is then the publication's, not the slot's: after a rebind a subscriber sees a jump,
which receivers treat like loss, and every (re)bound slot starts on a keyframe anyway.
"""

from __future__ import annotations

import fractions
from collections.abc import Callable
from typing import Any

import av
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder

#: Cuts one encoded frame into RTP payloads.
Packetize = Callable[[bytes], tuple[bytes, ...]]

_TIME_BASE = fractions.Fraction(1, 90_000)


def packetizer_for(codec: str) -> Packetize:
    """The packetizer of `codec` ("vp8", "h264", "opus", ...); unknown codecs pass through."""
    name = codec.lower()
    if name == "vp8":
        return _PackWith(Vp8Encoder())
    if name == "h264":
        return _PackWith(H264Encoder())
    return _whole


class _PackWith:
    """Uses an aiortc encoder's `pack()` (never `encode()`), which keeps per-stream state."""

    def __init__(self, encoder: Any) -> None:
        self._encoder = encoder

    def __call__(self, data: bytes) -> tuple[bytes, ...]:
        packet = av.Packet(data)
        packet.pts = 0
        packet.time_base = _TIME_BASE
        payloads, _ = self._encoder.pack(packet)
        return tuple(payloads)


def _whole(data: bytes) -> tuple[bytes, ...]:
    """Audio codecs (Opus, G.711): one frame, one packet."""
    return (data,)
