"""The shared base of the wire clients: one socket.io namespace (msgpack) and one WebRTC session.

VisitClient (/visit) and HotlineClient (/hotline) differ only in their namespace, the pushes
they record and a few event helpers; connecting, acked calls, waiting for pushes and the media
negotiation (the server offers, the client answers and publishes pre-encoded clips, received
frames are counted without decoding) live here, as the protocol is the same on both
(docs/protocol.md, "Media negotiation"). The load tester's replay drives any namespace with it.

Concurrency: one event loop. Renegotiations run as tasks the client owns; `close()` cancels them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import socketio
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from careline.loadtest.clip_track import ClipTrack, attach_keyframe_requests
from careline.loadtest.clips import Clip
from careline.loadtest.errors import LoadtestError
from careline.loadtest.frame_sink import FrameCounter, receiver_for_track, tap_receiver
from careline.loadtest.ice import loopback_configuration

logger = logging.getLogger(__name__)

#: Pushes every namespace with media may send.
MEDIA_PUSHES = ("media.state", "session.expired", "session.revoked")


class WireError(LoadtestError):
    """The server answered an event with an error ack, or refused the connection."""

    def __init__(
        self, event: str, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{event}: {code}: {message}", code=code)
        self.event = event
        #: the error's other fields (e.g. `node_url` of `visit.wrong_node`)
        self.details = details or {}


@dataclass
class WireClient:
    """One socket of `namespace`. `connect`, then `call`; `start_media` once the server allows.

    `recorded_pushes` names the server events recorded in `events` (and passed to `on_push`);
    None records every event that has no handler of its own. A client with clips publishes them on
    the m-lines the server's offers name.
    """

    url: str
    token: str
    video: Clip | None = None
    audio: Clip | None = None
    on_push: Callable[[str, Any], None] | None = None
    events: list[tuple[str, Any]] = field(default_factory=list)
    frames: FrameCounter = field(default_factory=FrameCounter)
    namespace: str = field(default="/", kw_only=True)
    #: the next peer connections' configuration; None: `loopback_configuration()` (no ICE
    #: servers, host candidates where `restrict_host_addresses` allows). Never name a server
    #: off this machine in tests.
    rtc_configuration: RTCConfiguration | None = field(default=None, kw_only=True)
    error_type: ClassVar[type[WireError]] = WireError
    recorded_pushes: ClassVar[tuple[str, ...] | None] = None

    def __post_init__(self) -> None:
        self.sio = self._new_socket()
        self.pc: RTCPeerConnection | None = None
        self.tracks: dict[str, tuple[str, str]] = {}
        self.video_track = ClipTrack(self.video) if self.video is not None else None
        self.audio_track = ClipTrack(self.audio) if self.audio is not None else None
        self._changed = asyncio.Event()
        self._published: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._negotiation = asyncio.Lock()

    def _new_socket(self) -> socketio.AsyncClient:
        sio = socketio.AsyncClient(serializer="msgpack", reconnection=False)
        if self.recorded_pushes is None:
            sio.on("*", self._record_any, namespace=self.namespace)
        else:
            for name in self.recorded_pushes:
                sio.on(name, self._recorder(name), namespace=self.namespace)
        sio.on("media.offer", self._on_offer, namespace=self.namespace)
        sio.on("media.tracks", self._on_tracks, namespace=self.namespace)
        sio.on("connect_error", self._recorder("connect_error"), namespace=self.namespace)
        return sio

    # -- signalling ----------------------------------------------------------------------------

    async def connect(self, within: float = 10.0) -> None:
        """Open the socket.io connection to the namespace; `error_type` if refused."""
        try:
            await self.sio.connect(
                self.url,
                auth=self.connect_auth(),
                namespaces=[self.namespace],
                transports=["websocket"],
                wait_timeout=within,
            )
        except socketio.exceptions.ConnectionError as exc:
            # engine.io keeps the aiohttp session of a failed connect open: close it here.
            http = self.sio.eio.http
            if http is not None and not http.closed:
                await http.close()
            refusals = [data for name, data in self.events if name == "connect_error"]
            data = refusals[-1] if refusals and isinstance(refusals[-1], dict) else {}
            code = str((data.get("data") or {}).get("code", "connect_failed"))
            raise self.error_type("connect", code, str(data.get("message", exc))) from None

    def connect_auth(self) -> dict[str, Any]:
        """The connect `auth` payload: the token (subclasses may add flags)."""
        return {"token": self.token}

    async def call(self, event: str, data: Any = None, within: float = 15) -> Any:
        """Emit with an ack; return its data or raise `error_type` (code `timeout` if none)."""
        try:
            reply = await self.sio.call(event, data, namespace=self.namespace, timeout=within)
        except socketio.exceptions.TimeoutError:
            raise self.error_type(event, "timeout", f"no ack within {within} s") from None
        except socketio.exceptions.BadNamespaceError:
            raise self.error_type(event, "disconnected", "the socket is not connected") from None
        if not isinstance(reply, dict) or not reply.get("ok"):
            err = reply.get("error", {}) if isinstance(reply, dict) else {}
            details = {k: v for k, v in err.items() if k not in ("code", "message")}
            raise self.error_type(event, str(err.get("code")), str(err.get("message")), details)
        return reply.get("data")

    async def move_to(self, url: str, within: float = 10.0) -> None:
        """Drop the peer connection and the socket, then connect to `url` (another node).

        Used when the server says a visit is served elsewhere, or the node holding it died:
        the caller joins again and starts a new peer connection there.
        """
        await self._drop_connection()
        self.url = url
        self.sio = self._new_socket()
        await self.connect(within)

    @property
    def connected(self) -> bool:
        """Whether the socket.io connection is up."""
        return bool(self.sio.connected)

    async def _drop_connection(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        self.tracks = {}
        if self.sio.connected:
            await self.sio.disconnect()

    async def error(self, event: str, data: Any = None) -> str:
        """Emit an event expected to fail; its error code (AssertionError if it succeeded)."""
        try:
            await self.call(event, data)
        except WireError as exc:
            return exc.code
        raise AssertionError(f"{event} unexpectedly succeeded")

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
        def record(data: Any = None) -> None:
            self._record(name, data)

        return record

    def _record_any(self, name: str, data: Any = None) -> None:
        self._record(name, data)

    def _record(self, name: str, data: Any) -> None:
        self.events.append((name, data))
        self._changed.set()
        if self.on_push is not None and name != "connect_error":
            self.on_push(name, data)

    # -- media -----------------------------------------------------------------------------------

    async def start_media(self) -> None:
        """`media.start`: a new peer connection answering the server's offer."""
        await self._answer(await self.open_media("media.start"))

    async def restart_media(self) -> None:
        """`media.restart`: a new peer connection and a new offer (aiortc has no ICE restart)."""
        await self._answer(await self.open_media("media.restart"))

    async def open_media(self, event: str = "media.start") -> dict[str, Any]:
        """Close any peer connection, build a new one with fresh tracks and return the server's
        offer (unanswered): `start_media` answers it at once, tests answer it themselves."""
        if self.pc is not None:
            await self.pc.close()
        # aiortc's senders stop their track when they stop: a new connection needs new tracks.
        if self.video_track is not None and self.video_track.readyState == "ended":
            self.video_track = ClipTrack(self.video_track.clip)
        if self.audio_track is not None and self.audio_track.readyState == "ended":
            self.audio_track = ClipTrack(self.audio_track.clip)
        self.pc = RTCPeerConnection(self.rtc_configuration or loopback_configuration())
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
        await self._drop_connection()
        for track in (self.video_track, self.audio_track):
            if track is not None:
                track.stop()
