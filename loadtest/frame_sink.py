"""Capture the ENCODED frames an aiortc receiver reassembles, without decoding them.

aiortc has no public hook that skips decoding: RTCRtpReceiver puts every complete frame
`(codec, JitterFrame)` on a per-receiver queue.Queue read by a decoder thread it starts in
`receive()`. `tap_receiver` swaps that queue for a ReceiverTap, whose `put` aiortc calls on the
event loop (from `_handle_rtp_packet`, and with the None stop sentinel from `stop()`, a
disconnect or an RTCP BYE). The decoder thread is still started by aiortc, but the module-level
`decoder_worker` is replaced once per process by a wrapper that returns at once for a tapped
receiver (so a tapped receiver costs no decoder thread and no decode) and delegates to aiortc's
worker for every other receiver (so untapped receivers still decode).

Both seams are aiortc 1.16 internals, checked on every call: a different release raises
AiortcInternalsError instead of silently decoding.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpReceiver, rtcrtpreceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from careline.loadtest.aiortc_internals import require_aiortc_internals, require_attribute
from careline.loadtest.errors import AiortcInternalsError
from careline.loadtest.frame_digest import frame_digest
from careline.loadtest.keyframes import keyframe_kind

logger = logging.getLogger(__name__)

OnFrame = Callable[[str, bytes, int], None]
"""Called with (codec name in lower case: "vp8", "h264", "opus"; frame bytes; RTP timestamp)."""

DEFAULT_ARRIVAL_CAPACITY = 4096

_SEAM = "tap_receiver"
_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_STARTED = "_RTCRtpReceiver__started"
_WORKER = "decoder_worker"
_WORKER_PARAMETERS = ("loop", "input_q", "output_q", "decode_error")
_BYPASS_MARK = "_careline_decoder_bypass"


class ReceiverTap:
    """Stands in for one receiver's decoder queue and hands each frame to `on_frame`.

    `put` runs on the event loop, inside aiortc's RTP handling: `on_frame` must be quick and
    must not block. An exception from it is logged and the frame dropped, so a faulty callback
    cannot stop the transport. The RTP timestamp is aiortc's, rebased to start at 0.
    """

    def __init__(
        self,
        on_frame: OnFrame,
        on_end: Callable[[], None] | None,
        track_queue: asyncio.Queue[Any] | None,
    ) -> None:
        self._on_frame = on_frame
        self._on_end = on_end
        self._track_queue = track_queue
        self._frames = 0
        self._ended = False

    @property
    def frames(self) -> int:
        """Frames handed to `on_frame` so far."""
        return self._frames

    @property
    def ended(self) -> bool:
        """Whether aiortc stopped the receiver (stop, disconnect or RTCP BYE)."""
        return self._ended

    def put(self, item: tuple[RTCRtpCodecParameters, JitterFrame] | None) -> None:
        """aiortc's side: a complete encoded frame, or None when the receiver stops."""
        if item is None:
            self._end()
            return
        if self._ended:
            return
        codec, frame = item
        self._frames += 1
        try:
            self._on_frame(codec.name.lower(), frame.data, frame.timestamp)
        except Exception:
            logger.exception("frame sink callback failed; frame dropped")

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._track_queue is not None:
            # What aiortc's decoder worker would do: end the RemoteStreamTrack's recv().
            self._track_queue.put_nowait(None)
        if self._on_end is not None:
            try:
                self._on_end()
            except Exception:
                logger.exception("frame sink end callback failed")


def tap_receiver(
    receiver: RTCRtpReceiver, on_frame: OnFrame, *, on_end: Callable[[], None] | None = None
) -> ReceiverTap:
    """Deliver `receiver`'s encoded frames to `on_frame` instead of decoding them.

    Call it from the peer connection's "track" handler, which must be a plain function (an
    async handler runs later, possibly after `receive()` started the decoder): the receiver
    must not have started. `on_end` runs once when the receiver stops. The receiver's
    RemoteStreamTrack yields no frames; its `recv()` ends when the receiver stops.
    """
    require_aiortc_internals(_SEAM)
    _install_decoder_bypass()
    current = require_attribute(receiver, _DECODER_QUEUE, _SEAM)
    if isinstance(current, ReceiverTap):
        raise RuntimeError("this receiver is already tapped")
    if not isinstance(current, queue.Queue):
        raise AiortcInternalsError(f"{_SEAM}: the receiver's decoder queue is not a queue.Queue")
    if require_attribute(receiver, _STARTED, _SEAM) or require_attribute(
        receiver, _DECODER_THREAD, _SEAM
    ):
        raise RuntimeError(
            "tap_receiver must run in the 'track' handler, before the receiver starts"
        )
    track_queue = getattr(receiver.track, "_queue", None)
    if not isinstance(track_queue, asyncio.Queue):
        raise AiortcInternalsError(f"{_SEAM}: the receiver's track has no asyncio.Queue")
    tap = ReceiverTap(on_frame, on_end, track_queue)
    setattr(receiver, _DECODER_QUEUE, tap)
    return tap


def receiver_for_track(pc: RTCPeerConnection, track: MediaStreamTrack) -> RTCRtpReceiver:
    """The receiver of `track` on `pc` (aiortc's "track" event passes the track only)."""
    for transceiver in pc.getTransceivers():
        if transceiver.receiver.track is track:
            return transceiver.receiver
    raise LookupError(f"no receiver of track {track.id} on this peer connection")


def _install_decoder_bypass() -> None:
    """Once per process: make aiortc's decoder thread return at once for tapped receivers."""
    current = require_attribute(rtcrtpreceiver, _WORKER, _SEAM)
    if getattr(current, _BYPASS_MARK, False):
        return
    if not callable(current):
        raise AiortcInternalsError(f"{_SEAM}: aiortc.rtcrtpreceiver.{_WORKER} is not callable")
    parameters = tuple(inspect.signature(current).parameters)
    if parameters != _WORKER_PARAMETERS:
        raise AiortcInternalsError(
            f"{_SEAM}: aiortc.rtcrtpreceiver.{_WORKER}{parameters} changed signature"
        )
    original = current

    def decoder_worker(
        loop: asyncio.AbstractEventLoop,
        input_q: object,
        output_q: object,
        decode_error: object,
    ) -> None:
        if isinstance(input_q, ReceiverTap):
            return  # frames go to the tap on the event loop; nothing to decode
        original(loop, input_q, output_q, decode_error)

    setattr(decoder_worker, _BYPASS_MARK, True)
    setattr(rtcrtpreceiver, _WORKER, decoder_worker)


@dataclass(frozen=True, slots=True)
class FrameArrival:
    """One received frame: content digest, arrival time (time.monotonic()) and what it was."""

    digest: bytes
    arrived_at: float
    codec: str
    timestamp: int
    size: int
    keyframe: bool


class FrameCounter:
    """Counts received frames per key (a track, a participant) and keeps their recent arrivals.

    At most `capacity` arrivals are kept per key; counts are exact. Use `on_frame_for(key)` as
    the `on_frame` of `tap_receiver`. Not thread-safe: use it on one event loop.
    """

    def __init__(self, capacity: int = DEFAULT_ARRIVAL_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._counts: dict[str, int] = {}
        self._arrivals: dict[str, deque[FrameArrival]] = {}
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []

    def on_frame_for(self, key: str) -> OnFrame:
        """A callback that records frames under `key`."""

        def on_frame(codec: str, data: bytes, timestamp: int) -> None:
            self.record(key, codec, data, timestamp)

        return on_frame

    def record(self, key: str, codec: str, data: bytes, timestamp: int) -> FrameArrival:
        """Record one frame received now under `key`."""
        arrival = FrameArrival(
            digest=frame_digest(data),
            arrived_at=time.monotonic(),
            codec=codec,
            timestamp=timestamp,
            size=len(data),
            keyframe=keyframe_kind(codec, data),
        )
        arrivals = self._arrivals.get(key)
        if arrivals is None:
            arrivals = self._arrivals[key] = deque(maxlen=self._capacity)
        arrivals.append(arrival)
        count = self._counts[key] = self._counts.get(key, 0) + 1
        if self._waiters:
            self._wake(key, count)
        return arrival

    def keys(self) -> tuple[str, ...]:
        """Every key a frame was recorded under."""
        return tuple(self._counts)

    def count(self, key: str) -> int:
        """Frames recorded under `key`."""
        return self._counts.get(key, 0)

    def arrivals(self, key: str) -> tuple[FrameArrival, ...]:
        """The most recent arrivals under `key`, oldest first."""
        return tuple(self._arrivals.get(key, ()))

    def digests(self, key: str) -> frozenset[bytes]:
        """Content digests of the kept arrivals under `key`."""
        return frozenset(arrival.digest for arrival in self._arrivals.get(key, ()))

    def latencies(self, key: str, sent_at: Callable[[bytes], float | None]) -> list[float]:
        """Seconds from send to arrival of each kept arrival whose send time is known.

        `sent_at` is typically `ClipTrack.sent_at` of the publisher, in the same process or on
        the same host (both sides use time.monotonic()).
        """
        latencies: list[float] = []
        for arrival in self._arrivals.get(key, ()):
            sent = sent_at(arrival.digest)
            if sent is not None:
                latencies.append(arrival.arrived_at - sent)
        return latencies

    async def wait_for(self, key: str, count: int) -> None:
        """Return once at least `count` frames were recorded under `key` (bound it by a timeout)."""
        if self.count(key) >= count:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (key, count, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _wake(self, key: str, count: int) -> None:
        for waiter_key, wanted, waiter in list(self._waiters):
            if waiter_key == key and count >= wanted and not waiter.done():
                waiter.set_result(None)
