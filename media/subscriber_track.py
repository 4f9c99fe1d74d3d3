"""The outbound track of one subscriber slot: forwarded encoded frames, keyframe-gated and bounded.

A slot is bound to one publication at a time and may be rebound when a participant leaves and
another joins (transceivers are recycled, so no renegotiation is needed). Its queue is bounded:
a slow subscriber loses frames up to the next keyframe (video) or its oldest frames (audio)
instead of growing memory or delaying others. Video starts on a keyframe after every (re)bind.

Two ways out: with a FrameWriter attached (the fast path, see rtp_writer) frames are sent as soon
as they are pushed, and the queue only fills while the connection is not up yet or its socket is
congested; without one, aiortc's sender pulls av.Packets through `recv()` and packs them itself.
"""

from __future__ import annotations

import asyncio
import fractions
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from careline.media.keyframes import is_keyframe
from careline.media.packetizer import Packetize

_U32 = 1 << 32


@dataclass(frozen=True, slots=True)
class ForwardedFrame:
    """One complete encoded frame as it left the publisher's receiver."""

    codec: str
    data: bytes
    timestamp: int
    keyframe: bool
    payloads: tuple[bytes, ...] = ()


class FrameWriter(Protocol):
    """Where a slot's frames go on the fast path (rtp_writer.RtpWriter)."""

    @property
    def codec(self) -> str:
        """The negotiated codec name, lower case ("vp8")."""
        ...

    @property
    def ready(self) -> bool:
        """True while the connection can send."""
        ...

    @property
    def congested(self) -> bool:
        """True while the socket is backed up."""
        ...

    def write(self, payloads: tuple[bytes, ...], pts: int) -> bool:
        """Send one frame's RTP payloads with timestamp `pts`."""
        ...


@dataclass(slots=True)
class SlotStats:
    """Counters of one subscriber slot."""

    forwarded: int = 0
    dropped: int = 0
    gated: int = 0
    wrong_codec: int = 0


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
        self._writer: FrameWriter | None = None

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

    @property
    def writer(self) -> FrameWriter | None:
        """The RTP fast path of this slot, once its sender has started."""
        return self._writer

    def attach(self, writer: FrameWriter) -> None:
        """Send through `writer` from now on (aiortc's sender loop then idles in `recv()`)."""
        self._writer = writer
        self._ready.set()  # wake a waiting recv() so it parks on the writer path
        self._drain()

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
        if self._writer is not None:
            self._drain()
        else:
            self._ready.set()

    def _drain(self) -> None:
        """Fast path: send what is queued, unless the connection is not up or is congested."""
        writer = self._writer
        if writer is None or not writer.ready or writer.congested:
            return
        frames = self._frames
        while frames:
            frame = frames.popleft()
            if frame.codec != writer.codec or not frame.payloads:
                self.stats.wrong_codec += 1
                continue
            writer.write(frame.payloads, self._pts(frame))
            self.stats.forwarded += 1

    def _pts(self, frame: ForwardedFrame) -> int:
        """The outbound timestamp of `frame`: continuous across rebinds."""
        if self._need_offset:
            start = 0 if self._last_out is None else self._last_out + self._frame_step
            self._offset = (start - frame.timestamp) % _U32
            self._need_offset = False
        pts = (frame.timestamp + self._offset) % _U32
        self._last_out = pts
        return pts

    async def recv(self) -> av.Packet[Any] | av.VideoFrame | av.AudioFrame:
        """The next forwarded frame as an av.Packet (aiortc's sender then calls `pack()`).

        With a FrameWriter attached this only returns by raising MediaStreamError at the end.
        """
        if self._source is not None:
            return await self._recv_decoded()
        while not self._frames or self._writer is not None:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame = self._frames.popleft()
        packet = av.Packet(frame.data)
        packet.pts = self._pts(frame)
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


def make_frame(
    codec: str, data: bytes, timestamp: int, packetize: Packetize | None = None
) -> ForwardedFrame:
    """A ForwardedFrame with its keyframe flag and RTP payloads computed once for everyone."""
    payloads = packetize(data) if packetize is not None else ()
    return ForwardedFrame(codec, data, timestamp, is_keyframe(codec, data), payloads)
