"""Fixtures of the client media tools: clips encoded once per session, loopback-only ICE."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from careline.loadtest.clips import Clip, audio_clip, video_clip
from careline.loadtest.ice import LOOPBACK, restore_host_addresses, restrict_host_addresses


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One clip cache for the session, so each clip is encoded once."""
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def vp8_clip(clip_dir: Path) -> Clip:
    """2 s of 320x240 VP8 at 30 fps, a keyframe every second."""
    return video_clip("vp8", width=320, height=240, seconds=2.0, cache_dir=clip_dir)


@pytest.fixture(scope="session")
def h264_clip(clip_dir: Path) -> Clip:
    """2 s of 320x240 H264 at 30 fps, a keyframe every second."""
    return video_clip("h264", width=320, height=240, seconds=2.0, cache_dir=clip_dir)


@pytest.fixture(scope="session")
def opus_clip(clip_dir: Path) -> Clip:
    """2 s of Opus."""
    return audio_clip(seconds=2.0, cache_dir=clip_dir)


@pytest.fixture
def loopback() -> Iterator[None]:
    """Peer connections created in the test gather host candidates on 127.0.0.1 only."""
    restrict_host_addresses(LOOPBACK)
    try:
        yield
    finally:
        restore_host_addresses()
