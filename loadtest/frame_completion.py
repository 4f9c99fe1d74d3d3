"""When each frame an aiortc receiver reassembles became complete: its last packet's arrival.

aiortc's receiver takes a video frame out of its jitter buffer only when the first packet of the
NEXT frame arrives, so a frame reaches the decoder queue (and frame_sink's tap) about one frame
interval (33 ms at 30 fps) after its last packet arrived. That wait is the receiving client's,
not the relay's: a relay-latency measurement needs the moment the frame was complete.

`install_completion_clock()` replaces, for the whole process, the JitterBuffer class aiortc's
RTCRtpReceiver instantiates (looked up when a receiver is created) with a subclass that notes
the arrival time (time.monotonic()) of the latest packet of each RTP timestamp. When aiortc takes
a complete frame out, the subclass keeps (frame bytes, time its latest packet arrived); aiortc
hands those same bytes to the tap within the same call, so the tap's `on_frame` looks the time
up with `completed_at(data)`, by object identity. Receivers created before the install keep
aiortc's own buffer (their frames have no completion time).

This is an aiortc 1.16 internal, checked at install: another release, or a JitterBuffer that is
not aiortc's, raises AiortcInternalsError instead of silently measuring something else.
"""

from __future__ import annotations

import inspect
import time
from collections import deque

from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from careline.loadtest.aiortc_internals import require_aiortc_internals, require_attribute
from careline.loadtest.errors import AiortcInternalsError
from careline.loadtest.frame_sink import DEFAULT_ARRIVAL_CAPACITY, FrameArrival, FrameCounter

__all__ = [
    "CompletionCounter",
    "CompletionJitterBuffer",
    "completed_at",
    "install_completion_clock",
    "restore_completion_clock",
]

_SEAM = "install_completion_clock"
_CLASS = "JitterBuffer"
_INIT_PARAMETERS = ("self", "capacity", "prefetch", "is_video")
_ADD_PARAMETERS = ("self", "packet")
#: RTP timestamps whose latest arrival is kept per receiver (frames still being assembled).
_TIMESTAMPS_KEPT = 64
#: Completed frames whose time is kept for the tap, newest last (several receivers interleave).
_RECENT_KEPT = 64

_recent: deque[tuple[bytes, float]] = deque(maxlen=_RECENT_KEPT)


class CompletionJitterBuffer(JitterBuffer):
    """aiortc's JitterBuffer, noting when the latest packet of each frame arrived.

    Runs on the event loop inside aiortc's RTP handling; each packet costs a dict update.
    """

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        super().__init__(capacity, prefetch=prefetch, is_video=is_video)
        self._latest: dict[int, float] = {}

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """aiortc's `add`, plus the completion time of the frame it returns, if any."""
        now = time.monotonic()
        latest = self._latest
        latest[packet.timestamp] = now
        if len(latest) > _TIMESTAMPS_KEPT:
            del latest[next(iter(latest))]  # a frame that never completed (its packets lost)
        pli_flag, frame = super().add(packet)
        if frame is not None:
            _recent.append((frame.data, latest.pop(frame.timestamp, now)))
        return pli_flag, frame


def completed_at(data: bytes) -> float | None:
    """When the frame whose bytes are `data` (the very object aiortc released) was complete.

    None for a frame of a receiver without the completion clock, or one released too long ago.
    """
    for released, moment in reversed(_recent):
        if released is data:
            return moment
    return None


def install_completion_clock() -> None:
    """Make every RTCRtpReceiver created from now on in this process note completion times.

    Idempotent. Undo with `restore_completion_clock()`.
    """
    require_aiortc_internals(_SEAM)
    current = require_attribute(rtcrtpreceiver, _CLASS, _SEAM)
    if current is CompletionJitterBuffer:
        return
    if current is not JitterBuffer:
        raise AiortcInternalsError(
            f"{_SEAM}: aiortc.rtcrtpreceiver.{_CLASS} is not aiortc.jitterbuffer.JitterBuffer"
        )
    for name, expected in (("__init__", _INIT_PARAMETERS), ("add", _ADD_PARAMETERS)):
        parameters = tuple(inspect.signature(getattr(JitterBuffer, name)).parameters)
        if parameters != expected:
            raise AiortcInternalsError(f"{_SEAM}: JitterBuffer.{name}{parameters} changed")
    if not hasattr(JitterFrame(b"", 0), "data"):
        raise AiortcInternalsError(f"{_SEAM}: JitterFrame has no data attribute")
    setattr(rtcrtpreceiver, _CLASS, CompletionJitterBuffer)


def restore_completion_clock() -> None:
    """Receivers created from now on use aiortc's JitterBuffer again (safe when not installed)."""
    if getattr(rtcrtpreceiver, _CLASS, None) is CompletionJitterBuffer:
        setattr(rtcrtpreceiver, _CLASS, JitterBuffer)
    _recent.clear()


class CompletionCounter(FrameCounter):
    """A FrameCounter that also logs (digest, completion time) of each frame, per key.

    The completion time comes from `completed_at`; a frame without one (no completion clock
    installed) is logged at its tap time and counted in `unstamped`. At most `log_capacity`
    entries are kept per key, the newest. Not thread-safe: use it on one event loop.
    """

    def __init__(
        self, capacity: int = DEFAULT_ARRIVAL_CAPACITY, log_capacity: int = 4 * 4096
    ) -> None:
        super().__init__(capacity)
        if log_capacity < 1:
            raise ValueError("log_capacity must be positive")
        self._log_capacity = log_capacity
        self._completions: dict[str, deque[tuple[bytes, float]]] = {}
        self._unstamped = 0

    @property
    def unstamped(self) -> int:
        """Frames logged at their tap time because no completion time was known."""
        return self._unstamped

    def record(self, key: str, codec: str, data: bytes, timestamp: int) -> FrameArrival:
        """Count the frame (FrameCounter.record) and log its completion time."""
        arrival = super().record(key, codec, data, timestamp)
        moment = completed_at(data)
        if moment is None:
            self._unstamped += 1
            moment = arrival.arrived_at
        log = self._completions.get(key)
        if log is None:
            log = self._completions[key] = deque(maxlen=self._log_capacity)
        log.append((arrival.digest, moment))
        return arrival

    def completions(self, key: str) -> tuple[tuple[bytes, float], ...]:
        """(digest, completion time) of the logged frames under `key`, oldest first."""
        return tuple(self._completions.get(key, ()))
