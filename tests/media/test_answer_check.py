"""Answers are checked whole before aiortc applies them: a refused answer leaves nothing behind."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from careline.loadtest.clip_track import ClipTrack
from careline.loadtest.clips import Clip, audio_clip, video_clip
from careline.loadtest.ice import loopback_configuration, restrict_host_addresses
from careline.media.errors import BadSdp, CodecNotAllowed, MediaError
from careline.media.sfu import Offer, Sfu, SfuConfig
from tests.media.peers import Router

ROOM = "room-1"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Clip, Clip]:
    cache = Path(tmp_path_factory.mktemp("clips"))
    video = video_clip("vp8", width=160, height=120, bitrate=100_000, seconds=1.0, cache_dir=cache)
    return video, audio_clip(seconds=1.0, cache_dir=cache)


@pytest.fixture
async def sfu() -> AsyncIterator[Sfu]:
    restrict_host_addresses(["127.0.0.1"])
    instance = Sfu(SfuConfig(), Router())
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture
async def client() -> AsyncIterator[RTCPeerConnection]:
    pc = RTCPeerConnection(loopback_configuration())
    try:
        yield pc
    finally:
        await pc.close()


async def answer_publishing(pc: RTCPeerConnection, offer: Offer, clips: tuple[Clip, Clip]) -> str:
    """A correct answer that sends a camera and a microphone on the m-lines the offer names."""
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
    tracks = {"video": ClipTrack(clips[0]), "audio": ClipTrack(clips[1])}
    for transceiver in pc.getTransceivers():
        for kind, mid in offer.publish.items():
            if transceiver.mid == mid:
                transceiver.direction = "sendonly"
                transceiver.sender.replaceTrack(tracks[kind])
    await pc.setLocalDescription(await pc.createAnswer())
    return str(pc.localDescription.sdp)


def h264_only(sdp: str) -> str:
    return re.sub(r"a=rtpmap:(\d+) VP8/90000", r"a=rtpmap:\1 H264/90000", sdp)


async def test_a_refused_codec_leaves_the_audio_m_line_unapplied(
    sfu: Sfu, client: RTCPeerConnection, clips: tuple[Clip, Clip]
) -> None:
    """aiortc applies m-lines in order and fails on the video one: the audio m-line (first)
    would keep its receiver's track, and a later correct answer would never publish audio."""
    offer = await sfu.open_session(ROOM, "alice", "vp8")
    good = await answer_publishing(client, offer, clips)
    session = sfu.session("alice")
    with pytest.raises(CodecNotAllowed) as refused:
        await sfu.accept_answer("alice", h264_only(good))
    assert refused.value.code == "media.codec_not_allowed"
    assert "vp8" in refused.value.message
    assert session.peer_connection.signalingState == "have-local-offer"
    assert all(t.receiver.track is None for t in session.peer_connection.getTransceivers())

    await sfu.accept_answer("alice", good)
    assert set(session.publications) == {"audio", "video"}


def strip(pattern: str) -> Callable[[str], str]:
    return lambda sdp: re.sub(pattern, "", sdp)


MALFORMED: dict[str, tuple[Callable[[str], str], type[MediaError]]] = {
    "no m-lines": (lambda sdp: sdp[: sdp.index("m=")], BadSdp),
    "missing m-line": (lambda sdp: sdp[: sdp.rindex("m=")], BadSdp),
    "no DTLS": (strip(r"a=(fingerprint|setup):[^\r\n]*\r\n"), BadSdp),
    "no fingerprint": (strip(r"a=fingerprint:[^\r\n]*\r\n"), BadSdp),
    "bad candidate": (lambda sdp: re.sub(r"a=candidate:[^\r\n]*", "a=candidate:x", sdp), BadSdp),
    "no formats": (lambda sdp: re.sub(r"(m=video \d+ \S+)[^\r\n]*", r"\1", sdp), BadSdp),
    "junk": (lambda sdp: "\x00\xff garbage", BadSdp),
    "H264 only": (h264_only, CodecNotAllowed),
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_answers_are_refused_with_a_code(
    sfu: Sfu, client: RTCPeerConnection, clips: tuple[Clip, Clip], name: str
) -> None:
    mutate, error = MALFORMED[name]
    offer = await sfu.open_session(ROOM, "alice", "vp8")
    good = await answer_publishing(client, offer, clips)
    with pytest.raises(error):
        await sfu.accept_answer("alice", mutate(good))
    await sfu.accept_answer("alice", good)  # the offer was still waiting, untouched
    assert set(sfu.session("alice").publications) == {"audio", "video"}


async def test_a_slot_answered_as_a_sender_is_refused(
    sfu: Sfu, client: RTCPeerConnection, clips: tuple[Clip, Clip]
) -> None:
    """A client must not publish into a slot (a send-only m-line of the server)."""
    other = RTCPeerConnection(loopback_configuration())
    try:
        first = await sfu.open_session(ROOM, "bob", "vp8")
        await sfu.accept_answer("bob", await answer_publishing(other, first, clips))
        offer = await sfu.open_session(ROOM, "alice", "vp8")
        assert offer.tracks  # alice's offer has slots carrying bob
        good = await answer_publishing(client, offer, clips)
        assert "a=recvonly" in good
        with pytest.raises(BadSdp, match="direction"):
            await sfu.accept_answer("alice", good.replace("a=recvonly", "a=sendrecv", 1))
        await sfu.accept_answer("alice", good)
    finally:
        await other.close()
