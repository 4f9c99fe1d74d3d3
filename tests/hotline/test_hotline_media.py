"""An answered call is a real video call through the SFU: each side gets the other's frames."""

from __future__ import annotations

from pathlib import Path

import pytest

from careline.loadtest.clips import Clip, video_clip
from careline.server.app_keys import MEDIA
from tests.hotline.conftest import Hotline
from tests.support import eventually


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    cache = Path(tmp_path_factory.mktemp("hotline-clips"))
    return video_clip("vp8", width=320, height=240, bitrate=300_000, seconds=2.0, cache_dir=cache)


async def test_kiosk_and_pharmacist_see_each_other_then_media_closes(
    hotline: Hotline, clip: Clip
) -> None:
    pharmacist, kiosk, _, accepted = await hotline.answered(video=clip)
    connected = await kiosk.wait_event("hotline.call", where=lambda c: c["state"] == "connected")
    kiosk_session, pharmacist_session = connected["session_id"], accepted["session_id"]
    assert kiosk_session
    assert pharmacist_session
    assert kiosk_session != pharmacist_session
    assert accepted["peer_session_id"] == kiosk_session

    await pharmacist.start_media()
    await kiosk.start_media()
    at_kiosk = await kiosk.frames_from(pharmacist_session, 20, within=15)
    at_pharmacist = await pharmacist.frames_from(kiosk_session, 20, within=15)
    digests = clip.digests()
    assert kiosk.frames.digests(at_kiosk) <= digests  # forwarded byte-identical
    assert pharmacist.frames.digests(at_pharmacist) <= digests
    assert kiosk.frames.arrivals(at_kiosk)[0].keyframe
    await kiosk.wait_event("media.state", where=lambda s: s["state"] == "connected")

    sfu = hotline.server.app[MEDIA].sfu
    assert sfu.has_session(kiosk_session)
    await pharmacist.call("hotline.end")
    await eventually(
        lambda: not sfu.has_session(kiosk_session) and not sfu.has_session(pharmacist_session)
    )
    await kiosk.wait_event("hotline.call", where=lambda c: c["state"] == "completed")
