"""Publication: keyframe requests reach the publisher's media SSRC, whatever else it sends."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from aiortc.rtcrtpreceiver import RTCRtpSynchronizationSource

from careline.media import publication
from careline.media.publication import Publication


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
