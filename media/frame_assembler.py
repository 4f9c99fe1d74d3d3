"""Reassembles encoded frames from RTP packets as soon as they are complete.

aiortc's jitter buffer releases a video frame only when the next frame's first packet arrives
(one frame interval of added latency) and stalls for hundreds of packets after a loss. This
replacement, installed per receiver by media.seams, releases a video frame when its marker
packet and every packet before it are present, gives up on a hole after `hole_timeout` seconds
(skipping to the next frame boundary and asking for a keyframe), and passes audio packets
straight through in order. It keeps aiortc's interface: `add(packet) -> (pli, frame | None)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

_MOD = 1 << 16
_HALF = 1 << 15


class FrameAssembler:
    """Per-receiver frame reassembly. Runs on the event loop; not thread-safe."""

    def __init__(
        self,
        kind: str,
        capacity: int = 512,
        hole_timeout: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._video = kind == "video"
        self._capacity = capacity
        self._hole_timeout = hole_timeout
        self._clock = clock
        self._packets: list[RtpPacket | None] = [None] * capacity
        self._origin: int | None = None  # first sequence number of the frame being assembled
        self._started = False
        self._present = 0  # packets known present from origin on, without a gap
        self._span = 0  # highest offset from origin stored so far, plus one
        self._hole_since: float | None = None
        self._last_audio: int | None = None
        self.frames_out = 0
        self.skipped = 0

    @property
    def capacity(self) -> int:
        """How many packets the buffer holds (aiortc reads it)."""
        return self._capacity

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """Store `packet`; return (send a PLI?, the frame it completed, if any)."""
        if not self._video:
            return False, self._audio(packet)
        seq = packet.sequence_number
        if not self._started:
            # A stream starts on a frame boundary: its first packet opens the first frame.
            self._started = True
            self._reset(seq)
        if self._origin is None:
            # Resynchronise after a reset: the packet after a marker starts a frame.
            if packet.marker:
                self._reset((seq + 1) % _MOD)
            return False, None
        offset = (seq - self._origin) % _MOD
        if offset >= _HALF:
            return False, None  # late: its frame was released or skipped already
        if offset >= self._capacity:
            self._origin = None  # far ahead: start over on the next boundary
            self.skipped += 1
            if packet.marker:
                self._reset((seq + 1) % _MOD)
            return True, None
        self._packets[seq % self._capacity] = packet
        self._span = max(self._span, offset + 1)
        frame = self._release()
        if frame is not None:
            return False, frame
        if not self._check_hole():
            return False, None
        return True, self._release_after_skip()

    def _audio(self, packet: RtpPacket) -> JitterFrame | None:
        seq = packet.sequence_number
        if self._last_audio is not None and (seq - self._last_audio) % _MOD >= _HALF:
            return None  # older than what we already passed on
        self._last_audio = seq
        return JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]

    def _reset(self, origin: int) -> None:
        self._packets = [None] * self._capacity
        self._origin = origin
        self._present = 0
        self._span = 0
        self._hole_since = None

    def _release(self) -> JitterFrame | None:
        """Return the oldest frame if all its packets up to the marker are present."""
        assert self._origin is not None
        packets = self._packets
        while self._present < self._span:
            seq = (self._origin + self._present) % _MOD
            packet = packets[seq % self._capacity]
            if packet is None or packet.sequence_number != seq:
                return None
            self._present += 1
            if packet.marker:
                return self._cut(self._present)
        return None

    def _release_after_skip(self) -> JitterFrame | None:
        """After skipping a broken frame, the next one may already be complete."""
        return None if self._origin is None else self._release()

    def _cut(self, count: int) -> JitterFrame:
        assert self._origin is not None
        parts = []
        timestamp = 0
        for i in range(count):
            index = (self._origin + i) % self._capacity
            packet = self._packets[index]
            assert packet is not None
            parts.append(packet._data)  # type: ignore[attr-defined]
            timestamp = packet.timestamp
            self._packets[index] = None
        self._origin = (self._origin + count) % _MOD
        self._present = 0
        self._span = max(0, self._span - count)
        self._hole_since = None
        self.frames_out += 1
        return JitterFrame(data=b"".join(parts), timestamp=timestamp)

    def _check_hole(self) -> bool:
        """A gap before later packets: wait `hole_timeout`, then skip to the next boundary."""
        if self._present >= self._span:
            self._hole_since = None
            return False
        now = self._clock()
        if self._hole_since is None:
            self._hole_since = now
            return False
        if now - self._hole_since < self._hole_timeout:
            return False
        assert self._origin is not None
        for offset in range(self._present + 1, self._span):
            packet = self._packets[(self._origin + offset) % self._capacity]
            if packet is not None and packet.marker:
                self._drop(offset + 1)
                break
        else:
            self._origin = None  # no boundary stored yet: resynchronise on the next marker
        self.skipped += 1
        self._hole_since = None
        return True

    def _drop(self, count: int) -> None:
        assert self._origin is not None
        for i in range(count):
            self._packets[(self._origin + i) % self._capacity] = None
        self._origin = (self._origin + count) % _MOD
        self._present = 0
        self._span = max(0, self._span - count)
