"""The RTP fast path of one subscriber slot: forwarded payloads straight to SRTP and the socket.

aiortc's RTCRtpSender runs one task per sender that awaits its track for every frame, builds an
RtpPacket object per packet, serializes its header extensions through a generic map and sends
through three coroutine layers (DTLS transport, ICE connection, protocol) per packet. For a
forwarded frame the payloads are already cut (once per publication, see packetizer), so a
RtpWriter does the rest synchronously on the event loop: a precomputed header, SRTP protect,
`sendto` on the selected candidate pair. Everything else stays aiortc's: negotiation, DTLS,
RTCP (sender reports read the counters kept here), NACK handling (`_retransmit` is overridden to
resend from this writer's history).

Bound to aiortc 1.16 internals (see seams.check_aiortc); `attach_rtp_writer()` refuses, and the
slot keeps aiortc's portable path, when they are missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpSender
from aiortc.clock import current_ntp_time
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket, wrap_rtx

from careline.media.errors import IncompatibleAiortc
from careline.media.seams import check_aiortc

log = logging.getLogger(__name__)

#: Packets kept per slot for NACK retransmission (aiortc keeps 128 too).
HISTORY_SIZE = 128
#: A slot whose socket has this much unsent data queued in user space counts as congested.
CONGESTED_BYTES = 256 * 1024

_HEADER = struct.Struct("!BBHLL")
_U16 = 1 << 16
_U32 = 1 << 32
#: NTP epoch (1900) to Unix epoch (1970), in seconds.
_NTP_OFFSET = 2_208_988_800
_SENDER = "_RTCRtpSender__"
_SENDER_ATTRS = (
    "rtp_header_extensions_map",
    "started",
    "ntp_timestamp",
    "rtp_timestamp",
    "octet_count",
    "packet_count",
)
_DTLS_TX = ("_RTCDtlsTransport__tx_bytes", "_RTCDtlsTransport__tx_packets")

#: Called with the writer once the sender has started (its transport is connected by then).
OnReady = Callable[["RtpWriter"], None]


class RtpWriter:
    """Sends forwarded frames for one RTCRtpSender. Not thread-safe: event loop only."""

    def __init__(self, sender: RTCRtpSender, parameters: RTCRtpSendParameters) -> None:
        codec = parameters.codecs[0]
        self.codec = codec.mimeType.split("/")[-1].lower()
        self._sender = sender
        self._dtls: RTCDtlsTransport = sender.transport
        self._connection = self._dtls.transport._connection
        self._srtp = self._dtls._tx_srtp
        self._ssrc = sender._ssrc
        if codec.payloadType is None:
            raise IncompatibleAiortc("the negotiated codec has no payload type")
        self._payload_type: int = codec.payloadType
        self._rtx_payload_type = next(
            (
                c.payloadType
                for c in parameters.codecs
                if c.mimeType.lower().endswith("/rtx")
                and str(c.parameters.get("apt")) == str(codec.payloadType)
            ),
            None,
        )
        self._rtx_seq = int.from_bytes(_random2(), "big")
        self._extensions_map: HeaderExtensionsMap = getattr(sender, _SENDER + _SENDER_ATTRS[0])
        self._ext_prefix, self._ext_suffix, self._ext_has_time = _extension_template(
            self._extensions_map, parameters.muxId
        )
        self._seq = int.from_bytes(_random2(), "big")
        self._ts_origin = int.from_bytes(_random2() + _random2(), "big")
        self._history: dict[int, bytes] = {}
        self.packets = 0
        self.octets = 0
        self.closed = False

    @property
    def congested(self) -> bool:
        """True when the socket cannot keep up and user-space buffering has built up."""
        pair = self._connection._nominated.get(1)
        if pair is None:
            return False
        transport: Any = pair.protocol.transport
        return int(transport.get_write_buffer_size()) > CONGESTED_BYTES

    @property
    def ready(self) -> bool:
        """True while DTLS is connected and ICE has a selected pair to send on."""
        if self.closed:
            return False
        if self._dtls._state is not State.CONNECTED:
            if self._dtls._state in (State.CLOSED, State.FAILED):
                self.closed = True
            return False
        return 1 in self._connection._nominated

    def write(self, payloads: tuple[bytes, ...], pts: int) -> bool:
        """Send one frame's payloads with RTP timestamp `pts` (+ origin); False if not sent."""
        pair = self._connection._nominated.get(1)
        if pair is None or self._dtls._state is not State.CONNECTED:
            return False
        sendto = pair.protocol.transport.sendto
        addr = pair.remote_addr
        protect = self._srtp.protect
        history = self._history
        timestamp = (self._ts_origin + pts) % _U32
        if self._ext_has_time:
            abs_send_time = int((time.time() + _NTP_OFFSET) * 262_144) & 0xFFFFFF
            extension = self._ext_prefix + abs_send_time.to_bytes(3, "big") + self._ext_suffix
        else:
            extension = self._ext_prefix
        last = len(payloads) - 1
        seq = self._seq
        sent_bytes = 0
        for i, payload in enumerate(payloads):
            plain = (
                _HEADER.pack(
                    0x90 if extension else 0x80,
                    ((i == last) << 7) | self._payload_type,
                    seq,
                    timestamp,
                    self._ssrc,
                )
                + extension
                + payload
            )
            history[seq % HISTORY_SIZE] = plain
            secured = protect(plain)
            sendto(secured, addr)
            sent_bytes += len(secured)
            self.octets += len(payload)
            seq = (seq + 1) % _U16
        self._seq = seq
        self.packets += len(payloads)
        self._account(timestamp, len(payloads), sent_bytes)
        return True

    def _account(self, timestamp: int, packets: int, sent_bytes: int) -> None:
        """Keep the counters aiortc's sender reports (RTCP SR) and stats are built from."""
        sender: Any = self._sender
        setattr(sender, _SENDER + "ntp_timestamp", current_ntp_time())
        setattr(sender, _SENDER + "rtp_timestamp", timestamp)
        setattr(sender, _SENDER + "octet_count", self.octets)
        setattr(sender, _SENDER + "packet_count", self.packets)
        dtls: Any = self._dtls
        setattr(dtls, _DTLS_TX[0], getattr(dtls, _DTLS_TX[0]) + sent_bytes)
        setattr(dtls, _DTLS_TX[1], getattr(dtls, _DTLS_TX[1]) + packets)

    async def retransmit(self, sequence_number: int) -> None:
        """Answer a NACK from this writer's history (RTX when negotiated), as aiortc would."""
        plain = self._history.get(sequence_number % HISTORY_SIZE)
        if plain is None or int.from_bytes(plain[2:4], "big") != sequence_number:
            return
        if self._rtx_payload_type is not None:
            packet = RtpPacket.parse(plain, self._extensions_map)
            rtx = wrap_rtx(
                packet,
                payload_type=self._rtx_payload_type,
                sequence_number=self._rtx_seq,
                ssrc=self._sender._rtx_ssrc,
            )
            self._rtx_seq = (self._rtx_seq + 1) % _U16
            plain = rtx.serialize(self._extensions_map)
        with contextlib.suppress(ConnectionError):
            await self._dtls._send_rtp(plain)


def attach_rtp_writer(sender: RTCRtpSender, on_ready: OnReady) -> None:
    """Call `on_ready(writer)` when `sender` starts; its NACKs are then answered by the writer.

    Raises IncompatibleAiortc if aiortc's sender or transports lack what the writer needs.
    """
    check_aiortc()
    missing = [a for a in _SENDER_ATTRS if not hasattr(sender, _SENDER + a)]
    if missing or not hasattr(sender, "_retransmit"):
        raise IncompatibleAiortc("RTCRtpSender lacks the counters the RTP fast path keeps")
    original_send = sender.send

    async def send(parameters: RTCRtpSendParameters) -> None:
        first = not getattr(sender, _SENDER + "started", True)
        await original_send(parameters)
        if not first:
            return
        try:
            writer = RtpWriter(sender, parameters)
        except (AttributeError, IndexError, IncompatibleAiortc) as exc:
            log.warning("RTP fast path unavailable (%r): aiortc's sender path is used", exc)
            return
        sender._retransmit = writer.retransmit  # type: ignore[method-assign]
        on_ready(writer)

    sender.send = send  # type: ignore[method-assign]


def _extension_template(
    extensions_map: HeaderExtensionsMap, mid: str | None
) -> tuple[bytes, bytes, bool]:
    """The header-extension block as (bytes before abs-send-time, bytes after, has the time).

    Built with aiortc's own serializer, so the layout (ids, one/two-byte form, padding) is
    exactly what aiortc would send; the 3 abs-send-time bytes are patched per frame.
    """
    low, high = HeaderExtensions(), HeaderExtensions()
    low.mid = high.mid = mid
    low.abs_send_time, high.abs_send_time = 0, 0xFFFFFF
    profile, value_low = extensions_map.set(low)
    _, value_high = extensions_map.set(high)
    if not value_low:
        return b"", b"", False
    head = struct.pack("!HH", profile, len(value_low) >> 2)
    diff = [i for i, (a, b) in enumerate(zip(value_low, value_high, strict=True)) if a != b]
    if not diff:
        return head + value_low, b"", False
    start = diff[0]
    if diff != [start, start + 1, start + 2]:
        raise IncompatibleAiortc("unexpected abs-send-time layout in the header extensions")
    return head + value_low[:start], value_low[start + 3 :], True


def _random2() -> bytes:
    return os.urandom(2)
