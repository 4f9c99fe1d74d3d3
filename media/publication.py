"""One published track (a participant's audio or video) and its fan-out to subscriber slots."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiortc import RTCRtpReceiver
from aiortc.contrib.media import MediaRelay
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from careline.media.keyframes import KeyframeThrottle
from careline.media.packetizer import Packetize, packetizer_for
from careline.media.seams import tap_receiver
from careline.media.subscriber_track import SubscriberTrack, make_frame

log = logging.getLogger(__name__)


class Publication:
    """Frames of one inbound track, forwarded encoded to every bound SubscriberTrack.

    Frames arrive on the event loop (from aiortc's receiver) and are pushed to each subscriber's
    bounded queue; nothing is decoded. Keyframe requests from subscribers are throttled to one
    PLI per `keyframe_interval` seconds, with one trailing request so a late asker is served,
    and repeated while any bound slot still waits for a keyframe.
    """

    def __init__(
        self,
        session_id: str,
        kind: str,
        receiver: RTCRtpReceiver,
        keyframe_interval: float,
        clock: Callable[[], float] = time.monotonic,
        transcode: bool = False,
    ) -> None:
        self.session_id = session_id
        self.kind = kind
        self.codec: str | None = None
        self._packetize: Packetize | None = None
        self._receiver = receiver
        self._subscribers: set[SubscriberTrack] = set()
        self._throttle = KeyframeThrottle(keyframe_interval, clock)
        self._interval = keyframe_interval
        self._trailing: asyncio.TimerHandle | None = None
        self._pli_tasks: set[asyncio.Task[None]] = set()
        self.frames_in = 0
        self.bytes_in = 0
        self.ended = False
        # Baseline for benchmarks only: decode once, re-encode per subscriber (aiortc MediaRelay).
        self._relay = MediaRelay() if transcode else None
        if self._relay is None:
            tap_receiver(receiver, self._on_frame, self._on_end)

    @property
    def keyframes_requested(self) -> int:
        """PLIs actually sent to the publisher."""
        return self._throttle.sent

    @property
    def subscriber_count(self) -> int:
        """How many slots are bound to this publication."""
        return len(self._subscribers)

    def subscribe(self, track: SubscriberTrack) -> None:
        """Bind a slot: it starts on this publication's next keyframe, which is requested."""
        track.rebind()
        track.on_keyframe_needed = self.request_keyframe
        self._subscribers.add(track)
        if self._relay is not None:
            track.use_source(self._relay.subscribe(self._receiver.track, buffered=False))
            return
        self.request_keyframe()

    def unsubscribe(self, track: SubscriberTrack) -> None:
        """Unbind a slot (it keeps its queue until rebound)."""
        self._subscribers.discard(track)
        if self._relay is not None:
            track.use_source(None)
        if track.on_keyframe_needed == self.request_keyframe:
            track.on_keyframe_needed = _nothing

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, throttled."""
        if self.kind != "video" or self.ended:
            return
        if self._throttle.allow():
            self._send_pli()
        elif self._trailing is None:
            loop = asyncio.get_running_loop()
            self._trailing = loop.call_later(self._interval, self._trailing_pli)

    def _trailing_pli(self) -> None:
        self._trailing = None
        if not self.ended and self._throttle.allow():
            self._send_pli()

    def _send_pli(self) -> None:
        sources = self._receiver.getSynchronizationSources()
        if not sources:
            return  # nothing received yet: the first frame will be a keyframe anyway
        # aiortc lists every SSRC heard, RTX included, in order of arrival: browsers often send
        # RTX padding (bandwidth probes) before media, and a PLI naming the RTX SSRC is ignored.
        # So the PLI goes to each SSRC heard; the publisher answers the one it encodes.
        loop = asyncio.get_running_loop()
        for source in sources:
            task = loop.create_task(self._receiver._send_rtcp_pli(source.source))
            self._pli_tasks.add(task)
            task.add_done_callback(self._pli_done)

    def _pli_done(self, task: asyncio.Task[None]) -> None:
        self._pli_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("PLI to session %s failed: %r", self.session_id, task.exception())

    def _on_frame(self, codec: RTCRtpCodecParameters, data: bytes, timestamp: int) -> None:
        name = codec.name.lower()
        if name != self.codec or self._packetize is None:
            self.codec = name
            self._packetize = packetizer_for(name)
        self.frames_in += 1
        self.bytes_in += len(data)
        if not self._subscribers:
            return
        frame = make_frame(name, data, timestamp, self._packetize)
        waiting = False
        for track in self._subscribers:
            track.push(frame)
            waiting = waiting or track.waiting_for_keyframe
        if waiting and not frame.keyframe:
            # A slot still waits for its first keyframe: ask again (throttled). A publisher may
            # ignore a request that comes soon after its last keyframe (libwebrtc drops those
            # within 300 ms), and without a new request the slot would wait forever.
            self.request_keyframe()

    def _on_end(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop forwarding; bound slots stay alive for rebinding. Safe to call twice."""
        if self.ended:
            return
        self.ended = True
        if self._trailing is not None:
            self._trailing.cancel()
            self._trailing = None
        for task in self._pli_tasks:
            task.cancel()
        for track in list(self._subscribers):
            self.unsubscribe(track)


def _nothing() -> None:
    """The keyframe callback of an unbound slot."""
