"""A hotline kiosk or pharmacist console over the public wire: socket.io (/hotline) and WebRTC.

Used by the load tester, the hotline benchmark and the integration tests, so it speaks only the
documented protocol (docs/protocol.md, "Pharmacist hotline") and can target any Careline
deployment. Media is optional: a client with a clip publishes it (pre-encoded, no encoder runs)
once its call is connected, and counts the frames it receives without decoding them; the socket
and the media negotiation are WireClient's (every `start_media` gets fresh tracks).

With several nodes a call's media lives on its kiosk's node: a `media.start` answered with
`hotline.wrong_node` makes the client open a media-only socket to that node (`media_client`)
and do its media there; `frames_from`/`mid_of` then read that socket's media. When the kiosk
reconnects to another node mid-call, the pharmacist gets `hotline.media_moved`: `follow_media`
drops the media and starts it again where it now lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from careline.loadtest.wire_client import MEDIA_PUSHES, WireClient, WireError

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
    "hotline.media_moved",
    *MEDIA_PUSHES,
)


#: `hotline.wrong_node` redirects followed by one `media.start` before giving up.
MAX_MOVES = 3

MediaEvent = Literal["media.start", "media.restart"]


class HotlineError(WireError):
    """The server answered a /hotline event with an error ack, or refused the connection."""


@dataclass
class HotlineClient(WireClient):
    """One kiosk or pharmacist. `connect`, then kiosks `place_call`, pharmacists `available`."""

    namespace: str = field(default=NAMESPACE, kw_only=True)
    #: a media-only socket (`media.*` events only; never replaces the console's socket)
    media_only: bool = field(default=False, kw_only=True)
    #: the media-only socket on the node holding the current call's media, if not this one
    media_client: HotlineClient | None = field(default=None, init=False, repr=False)
    error_type: ClassVar[type[WireError]] = HotlineError
    recorded_pushes: ClassVar[tuple[str, ...] | None] = PUSHES

    def connect_auth(self) -> dict[str, Any]:
        """The token, and `media_only` for a media-only socket."""
        auth = super().connect_auth()
        if self.media_only:
            auth["media_only"] = True
        return auth

    async def start_media(self) -> None:
        """`media.start` on the node holding the call's media (following `hotline.wrong_node`)."""
        await self._media_on_owner("media.start")

    async def restart_media(self) -> None:
        """`media.restart`, likewise."""
        await self._media_on_owner("media.restart")

    async def follow_media(self) -> None:
        """After `hotline.media_moved`: drop this call's media (and media-only socket) and
        `media.start` again from this socket, which says where the media now lives."""
        await self._drop_media()
        await self.start_media()

    async def _media_on_owner(self, event: MediaEvent) -> None:
        for _ in range(MAX_MOVES):
            side = self if self.media_client is None else self.media_client
            try:
                offer = await side.open_media(event)
            except HotlineError as exc:
                node_url = exc.details.get("node_url")
                if exc.code != "hotline.wrong_node" or not isinstance(node_url, str):
                    if side is self:
                        raise
                    # the media node went away: ask this client's own node again
                    await self._drop_media()
                    event = "media.start"
                    continue
                await self._media_at(node_url)
                continue
            await side._answer(offer)
            return
        raise HotlineError(event, "hotline.wrong_node", "too many redirects")

    async def _drop_media(self) -> None:
        """Close the peer connection and the media-only socket, if any."""
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        if self.media_client is not None:
            await self.media_client.close()
            self.media_client = None

    async def _media_at(self, url: str) -> None:
        """Do media through `url`: this socket if it is this client's node, else a media-only
        socket there (replacing any other one)."""
        await self._drop_media()
        if url.rstrip("/") == self.url.rstrip("/"):
            return
        media = HotlineClient(
            url,
            self.token,
            video=self.video,
            audio=self.audio,
            on_push=self.on_push,
            frames=self.frames,
            media_only=True,
        )
        await media.connect()
        self.media_client = media

    def mid_of(self, publisher: str, kind: str = "video") -> str | None:
        """The m-line that carries `publisher`'s track (on the media-only socket if any)."""
        if self.media_client is not None:
            return self.media_client.mid_of(publisher, kind)
        return super().mid_of(publisher, kind)

    async def frames_from(
        self, publisher: str, count: int, within: float = 10.0, kind: str = "video"
    ) -> str:
        """Wait for `count` frames of `publisher` (on the media-only socket if any)."""
        if self.media_client is not None:
            return await self.media_client.frames_from(publisher, count, within, kind)
        return await super().frames_from(publisher, count, within, kind)

    async def close(self) -> None:
        """Close the media-only socket, if any, then this one."""
        if self.media_client is not None:
            await self.media_client.close()
            self.media_client = None
        await super().close()

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
