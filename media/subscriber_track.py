"""The outbound track of one subscriber slot: forwarded encoded frames as av.Packets.

A slot is bound to one publication at a time and may be rebound when a participant leaves and
another joins (transceivers are recycled, so no renegotiation is needed). Its queue is bounded:
a slow subscriber loses frames up to the next keyframe (video) or its oldest frames (audio)
instead of growing memory or delaying others. Video starts on a keyframe after every (re)bind.
"""

from __future__ import annotations

import asyncio
import fractions
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from careline.media.keyframes import is_keyframe

_U32 = 1 << 32


@dataclass(frozen=True, slots=True)
class ForwardedFrame:
    """One complete encoded frame as it left the publisher's receiver."""

    codec: str
    data: bytes
    timestamp: int
    keyframe: bool


@dataclass(slots=True)
class SlotStats:
    """Counters of one subscriber slot."""

    forwarded: int = 0
    dropped: int = 0
    gated: int = 0


class SubscriberTrack(MediaStreamTrack):
    """A MediaStreamTrack that yields packets forwarded from whichever publication it is bound to.

    Not thread-safe: `push()` and `recv()` run on the event loop.
    """

    def __init__(self, kind: str, clock_rate: int, capacity: int) -> None:
        super().__init__()
        self.kind = kind
        self._time_base = fractions.Fraction(1, clock_rate)
        self._frame_step = clock_rate // (30 if kind == "video" else 50)
        self._frames: deque[ForwardedFrame] = deque()
        self._capacity = capacity
        self._ready = asyncio.Event()
        self._gate = kind == "video"
        self._binding = 0
        self._offset = 0
        self._last_out: int | None = None
        self._need_offset = True
        self.on_keyframe_needed: Callable[[], None] = lambda: None
        self.stats = SlotStats()
        self._source: MediaStreamTrack | None = None
        self._source_changed = asyncio.Event()

    @property
    def waiting_for_keyframe(self) -> bool:
        """True while video is held back until the next keyframe."""
        return self._gate

    def rebind(self) -> None:
        """Start over for a new publication: drop what is queued, wait for its keyframe."""
        self._frames.clear()
        self._ready.clear()
        self._binding += 1
        self._need_offset = True
        self._gate = self.kind == "video"

    def use_source(self, source: MediaStreamTrack | None) -> None:
        """Baseline mode only: read decoded frames from `source` (aiortc then encodes them)."""
        self._source = source
        self._source_changed.set()

    def push(self, frame: ForwardedFrame) -> None:
        """Queue a frame for this subscriber (called by the publication's fan-out)."""
        if self.readyState != "live":
            return
        if self._gate:
            if not frame.keyframe:
                self.stats.gated += 1
                return
            self._gate = False
        if len(self._frames) >= self._capacity:
            if self.kind == "video":
                # Behind: drop everything queued and resume at the next keyframe.
                self.stats.dropped += len(self._frames) + (0 if frame.keyframe else 1)
                self._frames.clear()
                if not frame.keyframe:
                    self._gate = True
                    self._ready.clear()
                    self.on_keyframe_needed()
                    return
            else:
                self._frames.popleft()
                self.stats.dropped += 1
        self._frames.append(frame)
        self._ready.set()

    async def recv(self) -> av.Packet[Any] | av.VideoFrame | av.AudioFrame:
        """The next forwarded frame as an av.Packet (aiortc's sender then calls `pack()`)."""
        if self._source is not None:
            return await self._recv_decoded()
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame = self._frames.popleft()
        if self._need_offset:
            # Keep the outbound RTP timeline continuous across rebinds.
            start = 0 if self._last_out is None else self._last_out + self._frame_step
            self._offset = (start - frame.timestamp) % _U32
            self._need_offset = False
        pts = (frame.timestamp + self._offset) % _U32
        self._last_out = pts
        packet = av.Packet(frame.data)
        packet.pts = pts
        packet.time_base = self._time_base
        self.stats.forwarded += 1
        return packet

    async def _recv_decoded(self) -> av.VideoFrame | av.AudioFrame:
        while self._source is not None and self.readyState == "live":
            frame = await self._source.recv()
            if isinstance(frame, av.VideoFrame | av.AudioFrame):
                self.stats.forwarded += 1
                return frame
        raise MediaStreamError

    def stop(self) -> None:
        """End the track: the sender's loop sees MediaStreamError and stops."""
        super().stop()
        self._frames.clear()
        self._ready.set()


def make_frame(codec: str, data: bytes, timestamp: int) -> ForwardedFrame:
    """A ForwardedFrame with its keyframe flag computed once for every subscriber."""
    return ForwardedFrame(codec, data, timestamp, is_keyframe(codec, data))
