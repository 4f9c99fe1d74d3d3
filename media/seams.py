"""The seams in aiortc 1.16 where Careline forwards encoded media instead of decoding it.

Receiver side: an RTCRtpReceiver puts each complete encoded frame `(codec, JitterFrame)` on a
per-receiver queue that a decoder thread drains. `tap_receiver()` swaps that queue, from the peer
connection's "track" handler (before `receive()` starts the thread), for one that hands frames to
a callback on the event loop; the decoder thread aiortc then starts returns at once.

Sender side: an RTCRtpSender given `av.Packet`s calls the codec's `pack()` instead of
`encode()`; a subscriber's PLI/FIR reaches `sender._send_keyframe()`, which the pack path
ignores, so `route_keyframe_requests()` overrides it per sender.

`check_aiortc()` fails loudly when these internals change; the media tests call it too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import aiortc
import aiortc.rtcrtpreceiver as rtcrtpreceiver
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from careline.media.errors import IncompatibleAiortc
from careline.media.frame_assembler import FrameAssembler

#: on_frame(codec, data, rtp_timestamp) for every complete encoded frame; None ends the stream.
FrameCallback = Callable[[RTCRtpCodecParameters, bytes, int], None]

_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_KIND_ATTR = "_RTCRtpReceiver__kind"
_SUPPORTED = ("1.16",)
_install_lock = threading.Lock()
_installed = False


class _TapQueue:
    """Stands in for a receiver's decoder queue: frames go to callbacks, not to a decoder."""

    def __init__(self, on_frame: FrameCallback, on_end: Callable[[], None]) -> None:
        self._on_frame = on_frame
        self._on_end = on_end
        self._ended = False

    def put(self, item: Any) -> None:
        """Called by aiortc on the event loop with `(codec, JitterFrame)`, or None at the end."""
        if item is None:
            if not self._ended:
                self._ended = True
                self._on_end()
            return
        codec, frame = item
        self._on_frame(codec, frame.data, frame.timestamp)


def check_aiortc() -> None:
    """Raise IncompatibleAiortc unless the internals this module relies on are present."""
    version = getattr(aiortc, "__version__", "")
    if not version.startswith(_SUPPORTED):
        raise IncompatibleAiortc(f"aiortc {version} is not a version the forwarding seam knows")
    probe_ok = (
        callable(getattr(rtcrtpreceiver, "decoder_worker", None))
        and hasattr(RTCRtpReceiver, "_send_rtcp_pli")
        and hasattr(RTCRtpSender, "_send_keyframe")
        and {_QUEUE_ATTR, _BUFFER_ATTR, _KIND_ATTR}
        <= set(RTCRtpReceiver.__init__.__code__.co_names)
    )
    if not probe_ok:
        raise IncompatibleAiortc(f"aiortc {version} changed the receiver/sender internals")


def _install_worker_bypass() -> None:
    """Make aiortc's decoder thread return at once for tapped receivers (process-wide, once)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        original = rtcrtpreceiver.decoder_worker

        def decoder_worker(loop: Any, input_q: Any, output_q: Any, decode_error: Any) -> None:
            if isinstance(input_q, _TapQueue):
                return  # forwarding: nothing to decode
            original(loop, input_q, output_q, decode_error)

        rtcrtpreceiver.decoder_worker = decoder_worker
        _installed = True


def tap_receiver(
    receiver: RTCRtpReceiver, on_frame: FrameCallback, on_end: Callable[[], None]
) -> None:
    """Route `receiver`'s encoded frames to `on_frame` (on the loop) instead of a decoder.

    Also replaces its jitter buffer with a FrameAssembler, which releases each frame as soon as
    it is complete. Call from the peer connection's "track" handler, before the receiver starts.
    """
    check_aiortc()
    _install_worker_bypass()
    if not all(hasattr(receiver, name) for name in (_QUEUE_ATTR, _BUFFER_ATTR, _KIND_ATTR)):
        raise IncompatibleAiortc("RTCRtpReceiver lacks the decoder queue or jitter buffer")
    setattr(receiver, _QUEUE_ATTR, _TapQueue(on_frame, on_end))
    setattr(receiver, _BUFFER_ATTR, FrameAssembler(str(getattr(receiver, _KIND_ATTR))))


def route_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """Send a subscriber's PLI/FIR on `sender` to `request` (the pack path ignores it)."""
    check_aiortc()
    sender._send_keyframe = request  # type: ignore[method-assign]
