"""The aiortc seams fail loudly when aiortc is not the audited release or has changed."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator

import aiortc
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, rtcrtpreceiver

from careline.loadtest.aiortc_internals import require_aiortc_internals
from careline.loadtest.clip_track import ClipTrack, attach_keyframe_requests
from careline.loadtest.clips import Clip
from careline.loadtest.errors import AiortcInternalsError
from careline.loadtest.frame_sink import tap_receiver
from careline.loadtest.ice import loopback_configuration


def ignore(codec: str, data: bytes, timestamp: int) -> None:
    """An on_frame that drops frames."""


@pytest.fixture
async def pc() -> AsyncIterator[RTCPeerConnection]:
    connection = RTCPeerConnection(loopback_configuration())
    try:
        yield connection
    finally:
        await connection.close()


def video_receiver(pc: RTCPeerConnection) -> RTCRtpReceiver:
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    receiver._track = rtcrtpreceiver.RemoteStreamTrack(kind="video")  # as setRemoteDescription
    return receiver


def test_the_installed_aiortc_is_the_audited_release() -> None:
    assert aiortc.__version__.startswith("1.16.")
    require_aiortc_internals("test")


async def test_another_aiortc_release_is_refused_by_every_seam(
    monkeypatch: pytest.MonkeyPatch, pc: RTCPeerConnection, opus_clip: Clip
) -> None:
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    track = ClipTrack(opus_clip)
    sender = pc.addTrack(track)

    with pytest.raises(AiortcInternalsError, match=r"aiortc 1\.17\.0"):
        tap_receiver(video_receiver(pc), ignore)
    with pytest.raises(AiortcInternalsError):
        attach_keyframe_requests(sender, track)


async def test_a_changed_decoder_worker_is_refused(
    monkeypatch: pytest.MonkeyPatch, pc: RTCPeerConnection
) -> None:
    def decoder_worker(loop: asyncio.AbstractEventLoop, input_q: object) -> None:
        """A worker of another aiortc release."""

    monkeypatch.setattr(rtcrtpreceiver, "decoder_worker", decoder_worker)

    with pytest.raises(AiortcInternalsError, match="changed signature"):
        tap_receiver(video_receiver(pc), ignore)


async def test_a_missing_private_attribute_is_refused(pc: RTCPeerConnection) -> None:
    receiver = video_receiver(pc)
    del receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]

    with pytest.raises(AiortcInternalsError, match="__decoder_queue is missing"):
        tap_receiver(receiver, ignore)


async def test_a_receiver_is_tapped_once_and_only_before_it_starts(
    pc: RTCPeerConnection,
) -> None:
    receiver = video_receiver(pc)
    tap_receiver(receiver, ignore)
    with pytest.raises(RuntimeError, match="already tapped"):
        tap_receiver(receiver, ignore)

    started = video_receiver(pc)
    started._RTCRtpReceiver__started = True  # type: ignore[attr-defined]
    try:
        with pytest.raises(RuntimeError, match="before the receiver starts"):
            tap_receiver(started, ignore)
    finally:  # a receiver that never really started must not be stopped by close()
        started._RTCRtpReceiver__started = False  # type: ignore[attr-defined]


async def test_untapped_receivers_still_reach_aiortcs_decoder_worker(
    pc: RTCPeerConnection,
) -> None:
    tap_receiver(video_receiver(pc), ignore)  # installs the bypass
    decoded: asyncio.Queue[object] = asyncio.Queue()
    work: queue.Queue[object] = queue.Queue()
    work.put(None)  # the stop sentinel: aiortc's worker forwards it and returns
    worker = threading.Thread(
        target=rtcrtpreceiver.decoder_worker,
        args=(asyncio.get_running_loop(), work, decoded, threading.Event()),
    )
    worker.start()
    async with asyncio.timeout(2):
        assert await decoded.get() is None
    worker.join()
