"""Real aiortc client peers for media tests: publish a pre-encoded clip, tap what they receive."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from careline.loadtest.clip_track import ClipTrack, attach_keyframe_requests
from careline.loadtest.clips import Clip
from careline.loadtest.frame_sink import FrameCounter, receiver_for_track, tap_receiver
from careline.loadtest.ice import loopback_configuration
from careline.media.sfu import Offer, Sfu, TrackMap


class Peer:
    """One participant: a peer connection that answers the Sfu's offers and publishes a clip."""

    def __init__(self, sfu: Sfu, room: str, session_id: str, video: Clip | None) -> None:
        self.sfu = sfu
        self.room = room
        self.session_id = session_id
        self.pc = RTCPeerConnection(loopback_configuration())
        self.video = ClipTrack(video) if video is not None else None
        self.frames = FrameCounter()
        self.tracks: dict[str, tuple[str, str]] = {}
        self._tracks_changed = asyncio.Event()
        self._published: set[str] = set()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        receiver = receiver_for_track(self.pc, track)
        mid = next(t.mid for t in self.pc.getTransceivers() if t.receiver is receiver)
        assert mid is not None
        tap_receiver(receiver, self.frames.on_frame_for(mid))

    async def join(self) -> None:
        """Open the session and answer its first offer."""
        await self.answer(await self.sfu.open_session(self.room, self.session_id, "vp8"))

    async def answer(self, offer: Offer) -> None:
        """Apply a server offer, publish on the m-lines it names, and answer."""
        self.set_tracks({**self.tracks, **offer.tracks})
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        video_mid = offer.publish.get("video")
        for transceiver in self.pc.getTransceivers():
            mid = transceiver.mid
            if self.video is None or mid is None or mid != video_mid or mid in self._published:
                continue
            transceiver.direction = "sendonly"
            transceiver.sender.replaceTrack(self.video)
            attach_keyframe_requests(transceiver.sender, self.video)
            self._published.add(mid)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        await self.sfu.accept_answer(self.session_id, self.pc.localDescription.sdp)

    def set_tracks(self, tracks: Mapping[str, tuple[str, str]]) -> None:
        """Record the latest track map from the server."""
        self.tracks = dict(tracks)
        self._tracks_changed.set()

    async def wait_mid(self, publisher: str, kind: str = "video") -> str:
        """Wait until some m-line carries `publisher`'s track (bound it with a timeout)."""
        while (mid := self.mid_of(publisher, kind)) is None:
            self._tracks_changed.clear()
            await self._tracks_changed.wait()
        return mid

    def mid_of(self, publisher: str, kind: str = "video") -> str | None:
        """The m-line that carries `publisher`'s track of `kind`, per the latest track map."""
        return next((m for m, (p, k) in self.tracks.items() if p == publisher and k == kind), None)

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class Router:
    """SfuEvents for tests: answers renegotiation offers with the right Peer, in owned tasks."""

    peers: dict[str, Peer] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    states: dict[str, list[str]] = field(default_factory=dict)

    def offer(self, session_id: str, offer: Offer) -> None:
        peer = self.peers.get(session_id)
        if peer is not None:
            task = asyncio.get_running_loop().create_task(peer.answer(offer))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def tracks(self, session_id: str, tracks: TrackMap) -> None:
        peer = self.peers.get(session_id)
        if peer is not None:
            peer.set_tracks(tracks)

    def state(self, session_id: str, state: str) -> None:
        self.states.setdefault(session_id, []).append(state)

    async def settle(self) -> None:
        """Wait for every renegotiation in flight (they must not fail)."""
        while self.tasks:
            done = await asyncio.gather(*list(self.tasks), return_exceptions=True)
            errors = [d for d in done if isinstance(d, BaseException)]
            assert not errors, errors


def track_keys(tracks: Mapping[str, tuple[str, str]]) -> set[tuple[str, str]]:
    """(publisher, kind) pairs of a track map."""
    return set(tracks.values())
