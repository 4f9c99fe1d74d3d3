"""Keyframe detection per codec, and the throttle on keyframe requests sent to a publisher."""

from __future__ import annotations

import time
from collections.abc import Callable

_VP8_START_CODE = b"\x9d\x01\x2a"


def is_keyframe(codec: str, data: bytes) -> bool:
    """True if `data` (one complete encoded frame) can be decoded on its own.

    `codec` is the lower-case codec name (vp8, h264, opus, ...). Audio frames always are.
    """
    if codec == "vp8":
        return len(data) >= 6 and not data[0] & 1 and data[3:6] == _VP8_START_CODE
    if codec == "h264":
        return _h264_has_idr(data)
    return codec not in {"vp9", "av1"}


def _h264_has_idr(data: bytes) -> bool:
    """Annex-B stream: look for a NAL unit of type 5 (IDR slice) after any start code."""
    index = data.find(b"\x00\x00\x01")
    while index != -1 and index + 3 < len(data):
        if data[index + 3] & 0x1F == 5:
            return True
        index = data.find(b"\x00\x00\x01", index + 3)
    return False


class KeyframeThrottle:
    """Lets at most one keyframe request through per `interval` seconds.

    Several subscribers asking at once (joins, PLIs) cost the publisher one keyframe.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self.requested = 0
        self.sent = 0

    def allow(self) -> bool:
        """Count a request; True if it should reach the publisher now."""
        self.requested += 1
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            return False
        self._last = now
        self.sent += 1
        return True
