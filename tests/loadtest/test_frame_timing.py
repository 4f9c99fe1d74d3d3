"""The latency seams: a frame's departure (its last packet sent) and completion (last arrived)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiortc
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer

from careline.loadtest.clip_track import ClipTrack
from careline.loadtest.clips import Clip
from careline.loadtest.errors import AiortcInternalsError
from careline.loadtest.frame_completion import (
    CompletionCounter,
    CompletionJitterBuffer,
    completed_at,
    install_completion_clock,
    restore_completion_clock,
)
from careline.loadtest.frame_departures import (
    DepartingClipTrack,
    DepartureLog,
    attach_departure_log,
)
from careline.loadtest.frame_digest import frame_digest
from careline.loadtest.frame_matching import match_frames
from careline.loadtest.frame_sink import receiver_for_track, tap_receiver
from careline.loadtest.ice import loopback_configuration

pytestmark = pytest.mark.usefixtures("loopback")

FRAMES = 20
TIMEOUT = 6.0


@pytest.fixture
def completion_clock() -> Iterator[None]:
    install_completion_clock()
    try:
        yield
    finally:
        restore_completion_clock()


@dataclass
class Call:
    publisher: RTCPeerConnection
    subscriber: RTCPeerConnection
    track: ClipTrack
    counter: CompletionCounter
    departures: DepartureLog


@asynccontextmanager
async def call(clip: Clip) -> AsyncIterator[Call]:
    """A publisher sending a DepartingClipTrack to a subscriber tapping it; departures logged."""
    publisher = RTCPeerConnection(loopback_configuration())
    subscriber = RTCPeerConnection(loopback_configuration())
    departures = DepartureLog(1000, time.monotonic)
    track = DepartingClipTrack(clip, departures)
    counter = CompletionCounter()
    try:
        sender = publisher.addTrack(track)

        def on_track(remote: MediaStreamTrack) -> None:
            tap_receiver(receiver_for_track(subscriber, remote), counter.on_frame_for("video"))

        subscriber.on("track", on_track)
        await publisher.setLocalDescription(await publisher.createOffer())
        await subscriber.setRemoteDescription(publisher.localDescription)
        await subscriber.setLocalDescription(await subscriber.createAnswer())
        await publisher.setRemoteDescription(subscriber.localDescription)
        attach_departure_log(sender, departures)
        attach_departure_log(sender, departures)  # idempotent
        yield Call(publisher, subscriber, track, counter, departures)
    finally:
        await publisher.close()
        await subscriber.close()


async def wait_for_frames(counter: CompletionCounter, count: int) -> None:
    async with asyncio.timeout(TIMEOUT):
        await counter.wait_for("video", count)


@pytest.mark.usefixtures("completion_clock")
async def test_frames_are_stamped_when_complete_not_when_the_jitter_buffer_lets_go(
    vp8_clip: Clip,
) -> None:
    async with call(vp8_clip) as running:
        await wait_for_frames(running.counter, FRAMES)
        counter = running.counter
        assert counter.unstamped == 0
        arrivals = counter.arrivals("video")[:FRAMES]
        completions = counter.completions("video")[:FRAMES]
        assert [digest for digest, _ in completions] == [a.digest for a in arrivals]
        # aiortc lets a frame go when the next one starts: about one frame interval later.
        waits = [
            a.arrived_at - moment for a, (_, moment) in zip(arrivals, completions, strict=True)
        ]
        assert all(wait >= 0 for wait in waits)
        assert statistics.median(waits) > vp8_clip.frame_interval / 2


@pytest.mark.usefixtures("completion_clock")
async def test_departures_pair_with_completions_into_small_positive_latencies(
    vp8_clip: Clip,
) -> None:
    async with call(vp8_clip) as running:
        await wait_for_frames(running.counter, FRAMES)
        departed = running.departures.between(0.0, time.monotonic())
        assert len(departed) >= FRAMES
        assert {digest for digest, _ in departed} <= vp8_clip.digests()
        for digest, moment in departed[:FRAMES]:
            handed = running.track.sent_at(digest)
            assert handed is not None
            assert handed <= moment  # it leaves after ClipTrack handed it to the sender
        delivery = match_frames(departed[:FRAMES], running.counter.completions("video"), 1.0)
        assert delivery.matched == FRAMES
        assert all(-0.002 <= latency < 0.5 for latency in delivery.latencies)


async def test_without_the_clock_frames_are_logged_at_tap_time(vp8_clip: Clip) -> None:
    assert vars(rtcrtpreceiver)["JitterBuffer"] is JitterBuffer
    async with call(vp8_clip) as running:
        await wait_for_frames(running.counter, 5)
        assert running.counter.unstamped == running.counter.count("video")
    assert completed_at(b"never released") is None


def test_install_is_idempotent_and_restore_puts_aiortc_back() -> None:
    install_completion_clock()
    install_completion_clock()
    try:
        assert vars(rtcrtpreceiver)["JitterBuffer"] is CompletionJitterBuffer
    finally:
        restore_completion_clock()
    assert vars(rtcrtpreceiver)["JitterBuffer"] is JitterBuffer
    restore_completion_clock()  # safe when not installed


def test_the_completion_clock_refuses_another_aiortc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(AiortcInternalsError, match=r"aiortc 1\.17\.0"):
        install_completion_clock()


def test_the_completion_clock_refuses_a_foreign_jitter_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Other(JitterBuffer):
        pass

    monkeypatch.setattr(rtcrtpreceiver, "JitterBuffer", Other)
    with pytest.raises(AiortcInternalsError, match=r"not aiortc\.jitterbuffer\.JitterBuffer"):
        install_completion_clock()
    monkeypatch.delattr(rtcrtpreceiver, "JitterBuffer")
    with pytest.raises(AiortcInternalsError, match="JitterBuffer is missing"):
        install_completion_clock()


async def test_departures_refuse_another_aiortc(
    monkeypatch: pytest.MonkeyPatch, vp8_clip: Clip
) -> None:
    pc = RTCPeerConnection(loopback_configuration())
    try:
        sender = pc.addTrack(ClipTrack(vp8_clip))
        monkeypatch.setattr(aiortc, "__version__", "1.17.0")
        with pytest.raises(AiortcInternalsError, match=r"aiortc 1\.17\.0"):
            attach_departure_log(sender, DepartureLog(10, time.monotonic))
    finally:
        await pc.close()


def test_the_departure_log_keeps_to_its_ssrc_and_the_marker_packet() -> None:
    clock = iter([1.0, 2.0, 3.0])
    log = DepartureLog(10, lambda: next(clock))
    log.ssrc = 0x01020304

    def rtp(marker: bool, ssrc: int) -> bytes:
        return bytes([0x80, (0x80 if marker else 0) | 96]) + bytes(6) + ssrc.to_bytes(4, "big")

    digest = frame_digest(b"frame")
    log.on_rtp(rtp(True, 0x01020304))  # nothing pending: ignored
    log.expect(digest)
    log.on_rtp(rtp(False, 0x01020304))  # not the last packet
    log.on_rtp(rtp(True, 0x0A0B0C0D))  # another stream (RTX, audio)
    log.on_rtp(bytes([0x80, 200]) + bytes(10))  # RTCP sender report
    assert log.count == 0
    log.on_rtp(rtp(True, 0x01020304))
    assert log.between(0.0, 10.0) == [(digest, 1.0)]
    log.on_rtp(rtp(True, 0x01020304))  # nothing pending any more
    assert log.count == 1
    assert log.between(1.5, 10.0) == []
