"""A video-visit participant over the public wire: socket.io (/visit, msgpack) and WebRTC.

Used by the load tester, the SFU benchmark and the integration tests, so it speaks only the
documented protocol (docs/protocol.md) and can target any Careline deployment. It publishes
pre-encoded clips (no encoder runs) and counts received frames without decoding them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from careline.loadtest.clip_track import ClipTrack, attach_keyframe_requests
from careline.loadtest.clips import Clip
from careline.loadtest.frame_sink import FrameCounter, receiver_for_track, tap_receiver
from careline.loadtest.ice import loopback_configuration

logger = logging.getLogger(__name__)

NAMESPACE = "/visit"


class VisitError(Exception):
    """The server answered an event with an error ack."""

    def __init__(self, event: str, code: str, message: str) -> None:
        super().__init__(f"{event}: {code}: {message}")
        self.event = event
        self.code = code


@dataclass
class VisitClient:
    """One participant. Call `connect`, `join`, then `start_media` once admitted."""

    url: str
    token: str
    video: Clip | None = None
    audio: Clip | None = None
    events: list[tuple[str, Any]] = field(default_factory=list)
    frames: FrameCounter = field(default_factory=FrameCounter)

    def __post_init__(self) -> None:
        self.sio = socketio.AsyncClient(serializer="msgpack", reconnection=False)
        self.pc: RTCPeerConnection | None = None
        self.participant_id: str | None = None
        self.tracks: dict[str, tuple[str, str]] = {}
        self.video_track = ClipTrack(self.video) if self.video is not None else None
        self.audio_track = ClipTrack(self.audio) if self.audio is not None else None
        self._changed = asyncio.Event()
        self._published: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._negotiation = asyncio.Lock()
        for name in (
            "visit.roster",
            "visit.waiting_room",
            "visit.admitted",
            "visit.denied",
            "visit.removed",
            "visit.ended",
            "visit.replaced",
            "visit.quality",
            "media.state",
            "session.expired",
            "session.revoked",
        ):
            self.sio.on(name, self._recorder(name), namespace=NAMESPACE)
        self.sio.on("media.offer", self._on_offer, namespace=NAMESPACE)
        self.sio.on("connect_error", self._recorder("connect_error"), namespace=NAMESPACE)
        self.sio.on("media.tracks", self._on_tracks, namespace=NAMESPACE)

    # -- signalling ----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the socket.io connection to the /visit namespace; VisitError if refused."""
        try:
            await self.sio.connect(
                self.url,
                auth={"token": self.token},
                namespaces=[NAMESPACE],
                transports=["websocket"],
                wait_timeout=10,
            )
        except socketio.exceptions.ConnectionError as exc:
            refusals = [data for name, data in self.events if name == "connect_error"]
            data = refusals[-1] if refusals and isinstance(refusals[-1], dict) else {}
            code = str((data.get("data") or {}).get("code", "connect_failed"))
            raise VisitError("connect", code, str(data.get("message", exc))) from None

    async def call(self, event: str, data: Any = None, within: float = 15) -> Any:
        """Emit with an ack; return its data or raise VisitError."""
        reply = await self.sio.call(event, data, namespace=NAMESPACE, timeout=within)
        if not isinstance(reply, dict) or not reply.get("ok"):
            err = reply.get("error", {}) if isinstance(reply, dict) else {}
            raise VisitError(event, str(err.get("code")), str(err.get("message")))
        return reply.get("data")

    async def join(self, visit_id: str) -> dict[str, Any]:
        """`visit.join`; remembers the participant id."""
        data: dict[str, Any] = await self.call("visit.join", {"visit_id": visit_id})
        self.participant_id = data["participant_id"]
        return data

    async def wait_event(
        self, name: str, within: float = 10.0, where: Callable[[Any], bool] | None = None
    ) -> Any:
        """The first recorded event `name` whose data satisfies `where` (waiting if needed)."""
        async with asyncio.timeout(within):
            while True:
                for event, data in self.events:
                    if event == name and (where is None or where(data)):
                        return data
                self._changed.clear()
                await self._changed.wait()

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(data: Any) -> None:
            self.events.append((name, data))
            self._changed.set()

        return record

    # -- media -----------------------------------------------------------------------------------

    async def start_media(self) -> None:
        """`media.start`: build a peer connection and answer the server's offer."""
        await self._answer(await self.open_media("media.start"))

    async def restart_media(self) -> None:
        """`media.restart`: a new peer connection and a new offer (aiortc has no ICE restart)."""
        await self._answer(await self.open_media("media.restart"))

    async def open_media(self, event: str = "media.start") -> dict[str, Any]:
        """Close any peer connection, build a new one and return the server's offer (unanswered).

        `start_media` answers it at once; tests use `make_answer` to answer it themselves.
        """
        if self.pc is not None:
            await self.pc.close()
        # aiortc's senders stop their track when they stop: a new connection needs new tracks.
        if self.video_track is not None and self.video_track.readyState == "ended":
            self.video_track = ClipTrack(self.video_track.clip)
        if self.audio_track is not None and self.audio_track.readyState == "ended":
            self.audio_track = ClipTrack(self.audio_track.clip)
        self.pc = RTCPeerConnection(loopback_configuration())
        self._published.clear()
        pc = self.pc

        def on_track(track: MediaStreamTrack) -> None:
            receiver = receiver_for_track(pc, track)
            mid = next(t.mid for t in pc.getTransceivers() if t.receiver is receiver)
            tap_receiver(receiver, self.frames.on_frame_for(str(mid)))

        pc.on("track", on_track)
        offer: dict[str, Any] = await self.call(event)
        return offer

    async def make_answer(self, offer: dict[str, Any]) -> str:
        """Apply a server offer, publish on the m-lines it names, and return the answer (unsent)."""
        async with self._negotiation:
            return await self._make_answer(offer)

    async def _make_answer(self, offer: dict[str, Any]) -> str:
        pc = self.pc
        if pc is None:
            raise RuntimeError("no peer connection: call open_media first")
        self._set_tracks(offer["tracks"])
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        publish: dict[str, str] = offer["publish"]
        for kind, track in (("video", self.video_track), ("audio", self.audio_track)):
            mid = publish.get(kind)
            if track is None or mid is None or mid in self._published:
                continue
            transceiver = next(t for t in pc.getTransceivers() if t.mid == mid)
            transceiver.direction = "sendonly"
            transceiver.sender.replaceTrack(track)
            attach_keyframe_requests(transceiver.sender, track)
            self._published.add(mid)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return str(pc.localDescription.sdp)

    async def _answer(self, offer: dict[str, Any]) -> None:
        async with self._negotiation:
            if self.pc is None:
                return
            sdp = await self._make_answer(offer)
            await self.call("media.answer", {"sdp": sdp})

    def _on_offer(self, data: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(data))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("renegotiation failed: %r", task.exception())

    def _on_tracks(self, data: dict[str, Any]) -> None:
        self._set_tracks(data["tracks"])

    def _set_tracks(self, tracks: list[dict[str, str]]) -> None:
        self.tracks = {t["mid"]: (t["publisher"], t["kind"]) for t in tracks}
        self._changed.set()

    def mid_of(self, publisher: str, kind: str = "video") -> str | None:
        """The m-line that carries `publisher`'s track of `kind`."""
        return next((m for m, (p, k) in self.tracks.items() if p == publisher and k == kind), None)

    async def frames_from(
        self, publisher: str, count: int, within: float = 10.0, kind: str = "video"
    ) -> str:
        """Wait until `count` frames of `publisher`'s `kind` track arrived; returns the m-line."""
        async with asyncio.timeout(within):
            while (mid := self.mid_of(publisher, kind)) is None:
                self._changed.clear()
                await self._changed.wait()
            await self.frames.wait_for(mid, count)
        return mid

    async def close(self) -> None:
        """Close the peer connection and the socket; safe to call twice."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        if self.sio.connected:
            await self.sio.disconnect()
        for track in (self.video_track, self.audio_track):
            if track is not None:
                track.stop()
