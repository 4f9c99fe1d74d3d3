"""When each frame a ClipTrack sends left this process: the send of its last RTP packet.

ClipTrack records when it hands a frame to aiortc's sender, before the sender packetizes it
(`pack()`), protects each packet with SRTP and writes it to the socket. A relay-latency
measurement wants the moment the frame's last packet left, to pair with the moment the
subscriber had it complete (frame_completion): then the difference is the relay's added delay
plus loopback, and nothing of either client's pacing.

`DepartingClipTrack` tells a DepartureLog the digest of each frame it hands over, and
`attach_departure_log(sender, log)` wraps the sender's DTLS transport `_send_rtp` (on this
transport instance only) so that, as the packet with the marker bit of the sender's SSRC is
handed over to be protected and written, the log stamps the pending frame with time.monotonic().
The stamp is taken just before the write, not after it: on a busy host the sending process may
lose the CPU right after `sendto`, while the relay and the subscriber already handle the packet,
and a stamp taken then would come after the frame's arrival. Stamping first can only add the
few microseconds of SRTP protect and `sendto` to a latency. aiortc's sender loop takes the next
frame only after every packet of the previous one was sent, so the pending digest is always the
frame whose packets are leaving. RTP headers are not encrypted by SRTP and aiortc serializes the
packet before protecting it, so the marker bit and SSRC are read from the bytes handed over;
retransmissions (RTX) carry another SSRC.

aiortc 1.16 internals (`RTCDtlsTransport._send_rtp`, `RTCRtpSender._ssrc`), checked at attach.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

import av
from aiortc import RTCRtpSender
from aiortc.rtp import is_rtcp
from av.stream import Stream

from careline.loadtest.aiortc_internals import require_aiortc_internals, require_attribute
from careline.loadtest.clip_track import ClipTrack
from careline.loadtest.clips import Clip
from careline.loadtest.errors import AiortcInternalsError
from careline.loadtest.frame_digest import frame_digest

__all__ = ["DepartingClipTrack", "DepartureLog", "attach_departure_log"]

_SEAM = "attach_departure_log"
_SEND_RTP = "_send_rtp"
_WRAPPED_MARK = "_careline_departure_logs"
_RTP_HEADER_SIZE = 12
_MARKER_BIT = 0x80

SendRtp = Callable[[bytes], Awaitable[None]]


class DepartureLog:
    """Departure times (time.monotonic()) of a sender's frames, by content digest.

    Keeps the latest `capacity` departures. Not thread-safe: use it on the sender's event loop.
    """

    def __init__(self, capacity: int, clock: Callable[[], float]) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._clock = clock
        self._departed: deque[tuple[bytes, float]] = deque(maxlen=capacity)
        self._pending: bytes | None = None
        self._first = asyncio.Event()
        self.ssrc: int | None = None

    @property
    def count(self) -> int:
        """Departures kept."""
        return len(self._departed)

    def expect(self, digest: bytes) -> None:
        """The sender was just handed the frame with this digest."""
        self._pending = digest

    def on_rtp(self, data: bytes) -> None:
        """An RTP or RTCP packet (not yet protected) is about to be written by the transport."""
        if self._pending is None or self.ssrc is None or len(data) < _RTP_HEADER_SIZE:
            return
        if is_rtcp(data) or not data[1] & _MARKER_BIT:
            return
        if int.from_bytes(data[8:12], "big") != self.ssrc:
            return
        self._departed.append((self._pending, self._clock()))
        self._pending = None
        self._first.set()

    async def wait_for_first(self) -> None:
        """Return once a frame has departed (bound it with a timeout)."""
        await self._first.wait()

    def between(self, start: float, end: float) -> list[tuple[bytes, float]]:
        """(digest, departure time) of the frames that left within [start, end], in order."""
        return [(digest, moment) for digest, moment in self._departed if start <= moment <= end]


class DepartingClipTrack(ClipTrack):
    """A ClipTrack that tells `log` which frame it hands to the sender (see the module doc)."""

    def __init__(self, clip: Clip, log: DepartureLog) -> None:
        super().__init__(clip)
        self._log = log

    async def recv(self) -> av.Packet[Stream]:
        """ClipTrack.recv, then note the frame's digest as pending departure."""
        packet = await super().recv()
        self._log.expect(frame_digest(bytes(packet)))
        return packet


def attach_departure_log(sender: RTCRtpSender, log: DepartureLog) -> None:
    """Stamp `log`'s pending frame when `sender`'s marker packet is being sent.

    Call it once the sender has a transport (after the local description is set). Several
    senders may share a transport (bundle); each log keeps to its own SSRC.
    """
    require_aiortc_internals(_SEAM)
    ssrc = require_attribute(sender, "_ssrc", _SEAM)
    if not isinstance(ssrc, int):
        raise AiortcInternalsError(f"{_SEAM}: RTCRtpSender._ssrc is not an int")
    transport = sender.transport
    if transport is None:
        raise RuntimeError("the sender has no transport yet: attach after negotiation")
    current = require_attribute(transport, _SEND_RTP, _SEAM)
    if not callable(current):
        raise AiortcInternalsError(f"{_SEAM}: RTCDtlsTransport.{_SEND_RTP} is not a method")
    log.ssrc = ssrc
    logs: list[DepartureLog] | None = getattr(current, _WRAPPED_MARK, None)
    if logs is not None:
        if log not in logs:
            logs.append(log)
        return
    original: SendRtp = current
    attached = [log]

    async def send_rtp(data: bytes) -> None:
        for each in attached:
            each.on_rtp(data)
        await original(data)

    setattr(send_rtp, _WRAPPED_MARK, attached)
    setattr(transport, _SEND_RTP, send_rtp)
