"""Publication: keyframe requests reach the publisher's media SSRC, whatever else it sends, and
are repeated while a slot still waits for a keyframe."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpSynchronizationSource

from careline.media import publication
from careline.media.publication import Publication
from careline.media.subscriber_track import SubscriberTrack


class FakeReceiver:
    """What Publication uses of an RTCRtpReceiver: the SSRCs heard and the PLI sender."""

    def __init__(self, ssrcs: list[int]) -> None:
        self.ssrcs = ssrcs
        self.plis: list[int] = []

    def getSynchronizationSources(self) -> list[RTCRtpSynchronizationSource]:  # noqa: N802
        now = datetime.datetime.now(datetime.UTC)
        return [RTCRtpSynchronizationSource(timestamp=now, source=s) for s in self.ssrcs]

    async def _send_rtcp_pli(self, media_ssrc: int) -> None:
        self.plis.append(media_ssrc)


@pytest.fixture(autouse=True)
def no_tap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publication, "tap_receiver", lambda *args: None)


def make(receiver: FakeReceiver) -> Publication:
    fake: Any = receiver
    return Publication("s-1", "video", fake, keyframe_interval=1.0)


async def test_a_pli_goes_to_every_ssrc_heard_so_rtx_heard_first_does_not_swallow_it() -> None:
    # Chromium often sends RTX padding (bandwidth probes) before its first media packet, so
    # the RTX SSRC can be the first one aiortc heard.
    receiver = FakeReceiver([2222, 1111])  # RTX first, then media
    pub = make(receiver)
    pub.request_keyframe()
    await asyncio.sleep(0)
    assert sorted(receiver.plis) == [1111, 2222]
    assert pub.keyframes_requested == 1


async def test_requests_within_the_interval_cost_one_pli_per_ssrc() -> None:
    receiver = FakeReceiver([1111, 2222])
    pub = make(receiver)
    pub.request_keyframe()
    pub.request_keyframe()  # within the interval: only a trailing request is scheduled
    await asyncio.sleep(0)
    assert sorted(receiver.plis) == [1111, 2222]
    pub.close()


async def test_no_pli_before_anything_was_received() -> None:
    receiver = FakeReceiver([])
    make(receiver).request_keyframe()
    await asyncio.sleep(0)
    assert receiver.plis == []


async def test_a_slot_waiting_for_a_keyframe_asks_again_until_one_comes() -> None:
    # libwebrtc ignores a keyframe request that comes within 300 ms of its last keyframe: a slot
    # bound just after another one's keyframe would otherwise wait for a keyframe forever.
    now = [100.0]
    receiver = FakeReceiver([1111])
    fake: Any = receiver
    pub = Publication("s-1", "video", fake, keyframe_interval=0.5, clock=lambda: now[0])
    slot = SubscriberTrack("video", 90_000, capacity=30)
    pub.subscribe(slot)  # the bind's own request
    await asyncio.sleep(0)
    assert receiver.plis == [1111]
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96)
    interframe = b"\x01" + bytes(20)
    keyframe = b"\x00\x00\x00\x9d\x01\x2a" + bytes(20)
    for step in range(1, 11):  # the publisher ignored that request: 1.25 s of interframes
        now[0] += 0.125
        pub._on_frame(vp8, interframe, step * 3000)
    await asyncio.sleep(0)
    assert waiting(slot)
    assert len(receiver.plis) == 3  # asked again every keyframe_interval while waiting
    pub._on_frame(vp8, keyframe, 40_000)
    assert not waiting(slot)
    for step in range(1, 11):
        now[0] += 0.125
        pub._on_frame(vp8, interframe, 40_000 + step * 3000)
    await asyncio.sleep(0)
    assert len(receiver.plis) == 3  # served: no more requests
    pub.close()


def waiting(slot: SubscriberTrack) -> bool:
    """Whether the slot still waits for a keyframe (a call, so mypy does not narrow it)."""
    return slot.waiting_for_keyframe
