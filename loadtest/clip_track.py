"""ClipTrack: a MediaStreamTrack that sends a Clip's encoded frames in real time, looping.

aiortc's RTCRtpSender hands anything that is not an av.Frame to the codec's `pack()`, so the
clip's bytes go on the wire as they are: no encoder runs in the sending process. The track
records when it handed each frame to the sender, keyed by content digest, so a receiver can
compute relay latency from the frames it gets back.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

import av
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from av.stream import Stream

from careline.loadtest.aiortc_internals import require_aiortc_internals, require_attribute
from careline.loadtest.clips import Clip
from careline.loadtest.errors import AiortcInternalsError
from careline.loadtest.frame_digest import frame_digest

DEFAULT_RECORD_CAPACITY = 4096


class ClipTrack(MediaStreamTrack):
    """Sends `clip` frame by frame, one `frame_interval` apart, forever (until `stop()`).

    Packet pts grows by `frame_duration` per frame sent, across loops and keyframe skips, so
    RTP timestamps stay monotonic. `request_keyframe()` makes the next frame sent the clip's
    next keyframe. When the event loop falls behind, frames are sent back to back until the
    schedule is met (as aiortc's own tracks do); `max_lateness` shows how far behind it fell.

    The send record keeps the latest send time (time.monotonic(), comparable across processes
    on one Linux host) of at most `record_capacity` distinct frames. A frame is sent again each
    loop, so a latency looked up by digest is right as long as it is shorter than the clip.
    Not thread-safe: use it on the event loop that runs the peer connection.
    """

    def __init__(self, clip: Clip, *, record_capacity: int = DEFAULT_RECORD_CAPACITY) -> None:
        super().__init__()
        if record_capacity < 1:
            raise ValueError("record_capacity must be positive")
        self.kind = clip.kind
        self._clip = clip
        self._digests = tuple(frame_digest(frame.data) for frame in clip.frames)
        self._record_capacity = record_capacity
        self._sent_at: OrderedDict[bytes, float] = OrderedDict()
        self._position = 0
        self._frames_sent = 0
        self._keyframe_requests = 0
        self._keyframe_pending = False
        self._started_at: float | None = None
        self._max_lateness = 0.0

    @property
    def clip(self) -> Clip:
        """The clip being sent."""
        return self._clip

    @property
    def frames_sent(self) -> int:
        """Frames handed to the sender so far."""
        return self._frames_sent

    @property
    def keyframe_requests(self) -> int:
        """Calls of `request_keyframe()` so far (PLI/FIR once `attach_keyframe_requests` ran)."""
        return self._keyframe_requests

    @property
    def max_lateness(self) -> float:
        """The most a frame was handed over behind its schedule, in seconds."""
        return self._max_lateness

    def request_keyframe(self) -> None:
        """Make the next frame sent the clip's next keyframe (skipping the frames before it)."""
        self._keyframe_requests += 1
        self._keyframe_pending = True

    def sent_at(self, digest: bytes) -> float | None:
        """When the frame with this content digest was last handed to the sender, if recorded."""
        return self._sent_at.get(digest)

    async def recv(self) -> av.Packet[Stream]:
        """The next frame as an av.Packet, once its send time has come."""
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._started_at is None:
            self._started_at = now
        due = self._started_at + self._frames_sent * self._clip.frame_interval
        if due > now:
            await asyncio.sleep(due - now)
            if self.readyState != "live":
                raise MediaStreamError
        else:
            self._max_lateness = max(self._max_lateness, now - due)
        if self._keyframe_pending:
            self._keyframe_pending = False
            self._position = self._next_keyframe(self._position)
        index = self._position
        frame = self._clip.frames[index]
        packet = av.Packet(frame.data)
        packet.pts = self._frames_sent * self._clip.frame_duration
        packet.dts = packet.pts
        packet.time_base = self._clip.time_base
        packet.is_keyframe = frame.keyframe
        self._record(self._digests[index])
        self._frames_sent += 1
        self._position = (index + 1) % len(self._clip.frames)
        return packet

    def _next_keyframe(self, start: int) -> int:
        frames = self._clip.frames
        for offset in range(len(frames)):
            index = (start + offset) % len(frames)
            if frames[index].keyframe:
                return index
        return start  # a clip without keyframes: nothing to skip to

    def _record(self, digest: bytes) -> None:
        self._sent_at[digest] = time.monotonic()
        self._sent_at.move_to_end(digest)
        while len(self._sent_at) > self._record_capacity:
            self._sent_at.popitem(last=False)


def attach_keyframe_requests(sender: RTCRtpSender, track: ClipTrack) -> None:
    """Route PLI/FIR received by `sender` to `track.request_keyframe()`.

    aiortc answers PLI/FIR by calling `sender._send_keyframe()`, which only sets a flag read on
    the encode path; with pre-encoded packets the request would be dropped. This overrides the
    method on this sender instance only.
    """
    seam = "attach_keyframe_requests"
    require_aiortc_internals(seam)
    if not callable(require_attribute(sender, "_send_keyframe", seam)):
        raise AiortcInternalsError(f"{seam}: RTCRtpSender._send_keyframe is not a method")
    setattr(sender, "_send_keyframe", track.request_keyframe)  # noqa: B010 - an instance override
