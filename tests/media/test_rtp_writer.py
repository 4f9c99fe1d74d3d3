"""The RTP fast path: real peers get well-formed RTP from it, SR counters and NACKs still work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpSendParameters
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket

from careline.loadtest.clips import Clip, video_clip
from careline.loadtest.ice import restrict_host_addresses
from careline.media.rtp_writer import HISTORY_SIZE, RtpWriter, _extension_template
from careline.media.sfu import Sfu, SfuConfig
from careline.media.subscriber_track import ForwardedFrame, SubscriberTrack
from tests.media.peers import Peer, Router

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    cache = Path(tmp_path_factory.mktemp("clips"))
    return video_clip("vp8", width=320, height=240, bitrate=300_000, seconds=2.0, cache_dir=cache)


@pytest.fixture
async def pair(clip: Clip) -> AsyncIterator[tuple[Sfu, Peer, Peer]]:
    restrict_host_addresses(["127.0.0.1"])
    router = Router()
    sfu = Sfu(SfuConfig(keyframe_interval=0.5), router)
    alice = Peer(sfu, "room", "alice", clip)
    bob = Peer(sfu, "room", "bob", None)
    router.peers.update(alice=alice, bob=bob)
    try:
        await alice.join()
        await bob.join()
        async with asyncio.timeout(8):
            mid = await bob.wait_mid("alice")
            await bob.frames.wait_for(mid, 20)
        yield sfu, alice, bob
    finally:
        await sfu.close()
        await alice.close()
        await bob.close()


def _writer_of(sfu: Sfu, session_id: str) -> RtpWriter:
    slot = next(s for s in sfu.session(session_id).slots if s.kind == "video")
    writer = slot.track.writer
    assert isinstance(writer, RtpWriter), "the fast path must be in use"
    return writer


@pytest.mark.parametrize(
    "extensions",
    [
        [(1, MID_URI), (3, TIME_URI)],
        [(4, TIME_URI), (9, MID_URI)],
        [(9, MID_URI)],
        [],
    ],
)
def test_extension_template_is_aiortcs_layout(extensions: list[tuple[int, str]]) -> None:
    mapping = HeaderExtensionsMap()
    mapping.configure(
        RTCRtpSendParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in extensions]
        )
    )
    prefix, suffix, has_time = _extension_template(mapping, "7")
    for value in (0, 0x123456, 0xFFFFFF):
        wanted = RtpPacket(payload_type=96, sequence_number=1, timestamp=2)
        wanted.ssrc = 3
        wanted.extensions = HeaderExtensions(mid="7", abs_send_time=value)
        expected = wanted.serialize(mapping)[12:]
        block = prefix + (value.to_bytes(3, "big") + suffix if has_time else b"")
        assert block == expected
    assert has_time == any(u == TIME_URI for _, u in extensions)


async def test_subscribers_get_well_formed_rtp_from_the_fast_path(
    pair: tuple[Sfu, Peer, Peer],
) -> None:
    sfu, _, bob = pair
    writer = _writer_of(sfu, "bob")
    slot = next(s for s in sfu.session("bob").slots if s.kind == "video")
    sender: Any = slot.transceiver.sender
    mapping = writer._extensions_map
    packets = [RtpPacket.parse(p, mapping) for p in writer._history.values()]
    assert len(packets) == min(writer.packets, HISTORY_SIZE)
    now_abs = int((time.time() + 2_208_988_800) * 262_144) & 0xFFFFFF
    for packet in packets:
        assert packet.ssrc == sender._ssrc
        assert packet.extensions.mid == slot.mid
        assert packet.extensions.abs_send_time is not None
        assert (now_abs - packet.extensions.abs_send_time) % (1 << 24) < 5 * 262_144
    # Sender reports and getStats() are built from the counters the writer keeps.
    before = writer.packets
    report = await sfu.session("bob").peer_connection.getStats()
    outbound = [s for s in report.values() if s.type == "outbound-rtp" and s.ssrc == sender._ssrc]
    assert len(outbound) == 1
    assert 0 < before <= outbound[0].packetsSent <= writer.packets
    # The receiving peer saw frames from exactly this SSRC.
    mid = bob.mid_of("alice")
    assert mid is not None
    assert bob.frames.count(mid) >= 20


async def test_a_nack_is_answered_from_the_writers_history(
    pair: tuple[Sfu, Peer, Peer],
) -> None:
    sfu, _, _ = pair
    writer = _writer_of(sfu, "bob")
    slot = next(s for s in sfu.session("bob").slots if s.kind == "video")
    sender: Any = slot.transceiver.sender
    dtls: Any = sender.transport
    seq = (writer._seq - 1) % 65_536  # the latest packet sent
    before = dtls._RTCDtlsTransport__tx_packets
    await sender._retransmit(seq)  # what aiortc calls for every sequence number a NACK lists
    assert dtls._RTCDtlsTransport__tx_packets == before + 1
    await sender._retransmit((seq + 30_000) % 65_536)  # not in the history: nothing sent
    assert dtls._RTCDtlsTransport__tx_packets == before + 1


class _Writer:
    """A FrameWriter that records what it would send (pure queue-policy tests)."""

    codec = "vp8"

    def __init__(self) -> None:
        self.ready = False
        self.congested = False
        self.sent: list[tuple[tuple[bytes, ...], int]] = []

    def write(self, payloads: tuple[bytes, ...], pts: int) -> bool:
        self.sent.append((payloads, pts))
        return True


def _frame(ts: int, key: bool, codec: str = "vp8") -> ForwardedFrame:
    return ForwardedFrame(codec, b"k" if key else b"d", ts, key, (b"p%d" % ts,))


async def test_fast_path_holds_frames_until_ready_and_while_congested() -> None:
    track = SubscriberTrack("video", 90_000, capacity=4)
    writer = _Writer()
    track.attach(writer)
    track.push(_frame(0, key=True))
    track.push(_frame(3000, key=False))
    assert writer.sent == []  # not connected yet: queued
    writer.ready = True
    track.push(_frame(6000, key=False))
    assert [pts for _, pts in writer.sent] == [0, 3000, 6000]
    writer.congested = True
    for ts in range(9000, 9000 + 5 * 3000, 3000):
        track.push(_frame(ts, key=False))
    # Over capacity while congested: everything queued is dropped until the next keyframe.
    assert track.waiting_for_keyframe
    assert track.stats.dropped == 5
    writer.congested = False
    track.push(_frame(30000, key=False))
    assert len(writer.sent) == 3
    track.push(_frame(33000, key=True))
    assert [pts for _, pts in writer.sent][-1] == 33000  # same binding: the publisher's clock
    track.stop()


async def test_fast_path_drops_frames_of_another_codec() -> None:
    track = SubscriberTrack("video", 90_000, capacity=4)
    writer = _Writer()
    writer.ready = True
    track.attach(writer)
    track.push(_frame(0, key=True, codec="h264"))
    assert writer.sent == []
    assert track.stats.wrong_codec == 1
    track.stop()
