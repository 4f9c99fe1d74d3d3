"""A hotline kiosk or pharmacist console over the public wire: socket.io (/hotline) and WebRTC.

Used by the hotline benchmark and the integration tests, so it speaks only the documented
protocol (docs/protocol.md, "Pharmacist hotline") and can target any Careline deployment. Media
is optional: a client with a clip publishes it (pre-encoded, no encoder runs) once its call is
connected, and counts the frames it receives without decoding them.
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
from careline.loadtest.errors import LoadtestError
from careline.loadtest.frame_sink import FrameCounter, receiver_for_track, tap_receiver
from careline.loadtest.ice import loopback_configuration

logger = logging.getLogger(__name__)

NAMESPACE = "/hotline"
#: Server pushes a client records (name, data) in `events`.
PUSHES = (
    "hotline.call",
    "hotline.position",
    "hotline.callback_offer",
    "hotline.offer",
    "hotline.offer_withdrawn",
    "hotline.presence",
    "hotline.queue",
    "hotline.replaced",
    "hotline.disabled",
    "media.state",
    "session.expired",
    "session.revoked",
)


class HotlineError(LoadtestError):
    """The server answered an event with an error ack, or refused the connection."""

    def __init__(self, event: str, code: str, message: str) -> None:
        super().__init__(f"{event}: {code}: {message}", code=code)
        self.event = event


@dataclass
class HotlineClient:
    """One kiosk or pharmacist. `connect`, then kiosks `place_call`, pharmacists `available`."""

    url: str
    token: str
    video: Clip | None = None
    on_push: Callable[[str, Any], None] | None = None
    events: list[tuple[str, Any]] = field(default_factory=list)
    frames: FrameCounter = field(default_factory=FrameCounter)

    def __post_init__(self) -> None:
        self.sio = socketio.AsyncClient(serializer="msgpack", reconnection=False)
        self.pc: RTCPeerConnection | None = None
        self.tracks: dict[str, tuple[str, str]] = {}
        self.video_track = ClipTrack(self.video) if self.video is not None else None
        self._changed = asyncio.Event()
        self._published: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._negotiation = asyncio.Lock()
        for name in PUSHES:
            self.sio.on(name, self._recorder(name), namespace=NAMESPACE)
        self.sio.on("media.offer", self._on_offer, namespace=NAMESPACE)
        self.sio.on("media.tracks", self._on_tracks, namespace=NAMESPACE)
        self.sio.on("connect_error", self._recorder("connect_error"), namespace=NAMESPACE)

    # -- signalling ----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the socket.io connection to /hotline; HotlineError if refused."""
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
            raise HotlineError("connect", code, str(data.get("message", exc))) from None

    async def call(self, event: str, data: Any = None, within: float = 15) -> Any:
        """Emit with an ack; return its data or raise HotlineError."""
        reply = await self.sio.call(event, data, namespace=NAMESPACE, timeout=within)
        if not isinstance(reply, dict) or not reply.get("ok"):
            err = reply.get("error", {}) if isinstance(reply, dict) else {}
            raise HotlineError(event, str(err.get("code")), str(err.get("message")))
        return reply.get("data")

    async def error(self, event: str, data: Any = None) -> str:
        """Emit an event expected to fail; its error code (AssertionError if it succeeded)."""
        try:
            await self.call(event, data)
        except HotlineError as exc:
            return exc.code
        raise AssertionError(f"{event} unexpectedly succeeded")

    async def place_call(self, order_token: str) -> dict[str, Any]:
        """Kiosk: `hotline.call`; the call view (with queue position)."""
        reply: dict[str, Any] = await self.call("hotline.call", {"order_token": order_token})
        return dict(reply["call"])

    async def available(self) -> dict[str, Any]:
        """Pharmacist: ready for calls."""
        data: dict[str, Any] = await self.call("hotline.presence", {"state": "available"})
        return data

    async def accept(self, call_id: str) -> dict[str, Any]:
        """Pharmacist: answer the call offered; the call view."""
        reply: dict[str, Any] = await self.call("hotline.accept", {"call_id": call_id})
        return dict(reply["call"])

    async def wait_event(
        self, name: str, within: float = 10.0, where: Callable[[Any], bool] | None = None
    ) -> Any:
        """The first recorded push `name` whose data satisfies `where` (waiting if needed)."""
        async with asyncio.timeout(within):
            while True:
                for event, data in self.events:
                    if event == name and (where is None or where(data)):
                        return data
                self._changed.clear()
                await self._changed.wait()

    def pushes(self, name: str) -> list[Any]:
        """Every recorded push `name`, oldest first."""
        return [data for event, data in self.events if event == name]

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(data: Any) -> None:
            self.events.append((name, data))
            self._changed.set()
            if self.on_push is not None:
                self.on_push(name, data)

        return record

    # -- media -----------------------------------------------------------------------------------

    async def start_media(self) -> None:
        """`media.start` for the connected call: a peer connection answering the server."""
        if self.pc is not None:
            await self.pc.close()
        self.pc = RTCPeerConnection(loopback_configuration())
        self._published.clear()
        pc = self.pc

        def on_track(track: MediaStreamTrack) -> None:
            receiver = receiver_for_track(pc, track)
            mid = next(t.mid for t in pc.getTransceivers() if t.receiver is receiver)
            tap_receiver(receiver, self.frames.on_frame_for(str(mid)))

        pc.on("track", on_track)
        await self._answer(await self.call("media.start"))

    async def _answer(self, offer: dict[str, Any]) -> None:
        async with self._negotiation:
            pc = self.pc
            if pc is None:
                return
            self._set_tracks(offer["tracks"])
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            mid = offer["publish"].get("video")
            if self.video_track is not None and mid is not None and mid not in self._published:
                transceiver = next(t for t in pc.getTransceivers() if t.mid == mid)
                transceiver.direction = "sendonly"
                transceiver.sender.replaceTrack(self.video_track)
                attach_keyframe_requests(transceiver.sender, self.video_track)
                self._published.add(mid)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            await self.call("media.answer", {"sdp": pc.localDescription.sdp})

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

    async def frames_from(self, publisher: str, count: int, within: float = 10.0) -> str:
        """Wait until `count` video frames of `publisher` arrived; returns the m-line."""
        async with asyncio.timeout(within):
            while True:
                mid = next(
                    (m for m, (p, k) in self.tracks.items() if p == publisher and k == "video"),
                    None,
                )
                if mid is not None:
                    break
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
        if self.video_track is not None:
            self.video_track.stop()
