"""A real call between two aiortc peers on 127.0.0.1: ClipTrack out, tapped receiver in."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender

from careline.loadtest.clip_track import ClipTrack, attach_keyframe_requests
from careline.loadtest.clips import Clip, video_clip
from careline.loadtest.frame_sink import FrameCounter, ReceiverTap, receiver_for_track, tap_receiver
from careline.loadtest.ice import loopback_configuration

pytestmark = pytest.mark.usefixtures("loopback")

FRAMES = 20
TIMEOUT = 6.0


@dataclass
class Call:
    """Two connected peers: `publisher` sends, `subscriber` taps or reads what it receives."""

    publisher: RTCPeerConnection
    subscriber: RTCPeerConnection
    counter: FrameCounter
    taps: dict[str, ReceiverTap] = field(default_factory=dict)
    untapped: dict[str, MediaStreamTrack] = field(default_factory=dict)


class SignallingClipTrack(ClipTrack):
    """A ClipTrack that also sets an event when a keyframe is requested."""

    def __init__(self, clip: Clip) -> None:
        super().__init__(clip)
        self.requested = asyncio.Event()

    def request_keyframe(self) -> None:
        super().request_keyframe()
        self.requested.set()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def thread_names() -> list[str]:
    return sorted(thread.name for thread in threading.enumerate())


async def negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


def candidate_addresses(sdp: str) -> set[str]:
    # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}


@asynccontextmanager
async def call(
    tracks: list[ClipTrack], tap_kinds: set[str], video_codec: str | None = None
) -> AsyncIterator[Call]:
    """Connect a publisher sending `tracks` to a subscriber tapping `tap_kinds`; close both."""
    publisher = RTCPeerConnection(loopback_configuration())
    subscriber = RTCPeerConnection(loopback_configuration())
    result = Call(publisher, subscriber, FrameCounter())
    try:
        for track in tracks:
            sender = publisher.addTrack(track)
            attach_keyframe_requests(sender, track)
        if video_codec is not None:
            codecs = [
                codec
                for codec in RTCRtpSender.getCapabilities("video").codecs
                if codec.mimeType.lower() == f"video/{video_codec}"
            ]
            for transceiver in publisher.getTransceivers():
                if transceiver.kind == "video":
                    transceiver.setCodecPreferences(codecs)

        def on_track(track: MediaStreamTrack) -> None:
            if track.kind in tap_kinds:
                receiver = receiver_for_track(subscriber, track)
                on_frame = result.counter.on_frame_for(track.kind)
                result.taps[track.kind] = tap_receiver(receiver, on_frame)
            else:
                result.untapped[track.kind] = track

        subscriber.on("track", on_track)
        await negotiate(publisher, subscriber)
        for pc in (publisher, subscriber):
            assert pc.localDescription is not None
            assert candidate_addresses(pc.localDescription.sdp) == {"127.0.0.1"}
        yield result
    finally:
        await publisher.close()
        await subscriber.close()


async def settle(baseline_threads: list[str], baseline_fds: int) -> None:
    """Wait (briefly) until threads and open fds are back to what they were."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if thread_names() == baseline_threads and open_fds() <= baseline_fds:
            return
        await asyncio.sleep(0.02)
    assert thread_names() == baseline_threads
    assert open_fds() <= baseline_fds


async def test_vp8_frames_arrive_byte_identical_without_a_decoder_thread(
    vp8_clip: Clip, opus_clip: Clip
) -> None:
    video, audio = ClipTrack(vp8_clip), ClipTrack(opus_clip)
    baseline_threads, baseline_fds = thread_names(), open_fds()

    async with call([video, audio], tap_kinds={"video"}) as running:
        async with asyncio.timeout(TIMEOUT):
            await running.counter.wait_for("video", FRAMES)
            # The untapped audio receiver still decodes, on aiortc's own decoder thread.
            decoded = await running.untapped["audio"].recv()
        assert isinstance(decoded, av.AudioFrame)
        names = thread_names()
        assert "video-decoder" not in names
        assert "audio-decoder" in names

        arrivals = running.counter.arrivals("video")
        assert {arrival.codec for arrival in arrivals} == {"vp8"}
        assert running.counter.digests("video") <= vp8_clip.digests()
        assert arrivals[0].keyframe
        latencies = running.counter.latencies("video", video.sent_at)
        assert len(latencies) == len(arrivals)
        assert all(0 <= latency < 1.0 for latency in latencies)
        tap = running.taps["video"]
        assert tap.frames == running.counter.count("video")

    assert tap.ended
    await settle(baseline_threads, baseline_fds)


async def test_h264_and_opus_frames_arrive_byte_identical(h264_clip: Clip, opus_clip: Clip) -> None:
    video, audio = ClipTrack(h264_clip), ClipTrack(opus_clip)
    baseline_threads, baseline_fds = thread_names(), open_fds()

    async with call([video, audio], tap_kinds={"video", "audio"}, video_codec="h264") as running:
        async with asyncio.timeout(TIMEOUT):
            await running.counter.wait_for("video", FRAMES)
            await running.counter.wait_for("audio", FRAMES)
        names = thread_names()
        assert "video-decoder" not in names
        assert "audio-decoder" not in names

        assert {arrival.codec for arrival in running.counter.arrivals("video")} == {"h264"}
        assert running.counter.digests("video") <= h264_clip.digests()
        assert running.counter.arrivals("video")[0].keyframe
        assert {arrival.codec for arrival in running.counter.arrivals("audio")} == {"opus"}
        assert running.counter.digests("audio") <= opus_clip.digests()
        taps = dict(running.taps)

    assert all(tap.ended for tap in taps.values())
    await settle(baseline_threads, baseline_fds)


async def test_picture_loss_indication_makes_the_track_skip_to_a_keyframe(
    clip_dir: Path,
) -> None:
    # One keyframe per 3 s loop: without the PLI route the next one would be ~75 frames away.
    clip = await asyncio.to_thread(video_clip, "vp8", 320, 240, 30, 300_000, 3.0, 90, clip_dir)
    track = SignallingClipTrack(clip)

    async with call([track], tap_kinds={"video"}) as running:
        async with asyncio.timeout(TIMEOUT):
            await running.counter.wait_for("video", 15)
            receiver = running.subscriber.getTransceivers()[0].receiver
            (source,) = receiver.getSynchronizationSources()
            await receiver._send_rtcp_pli(source.source)
            await track.requested.wait()
            requested_at = running.counter.count("video")
            await running.counter.wait_for("video", requested_at + 5)
        after = running.counter.arrivals("video")[requested_at : requested_at + 5]
        assert any(arrival.keyframe for arrival in after)
        assert track.keyframe_requests == 1
