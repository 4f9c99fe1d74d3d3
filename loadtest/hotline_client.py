"""A hotline kiosk or pharmacist console over the public wire: socket.io (/hotline) and WebRTC.

Used by the load tester, the hotline benchmark and the integration tests, so it speaks only the
documented protocol (docs/protocol.md, "Pharmacist hotline") and can target any Careline
deployment. Media is optional: a client with a clip publishes it (pre-encoded, no encoder runs)
once its call is connected, and counts the frames it receives without decoding them; the socket
and the media negotiation are WireClient's (every `start_media` gets fresh tracks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

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
    *MEDIA_PUSHES,
)


class HotlineError(WireError):
    """The server answered a /hotline event with an error ack, or refused the connection."""


@dataclass
class HotlineClient(WireClient):
    """One kiosk or pharmacist. `connect`, then kiosks `place_call`, pharmacists `available`."""

    namespace: str = field(default=NAMESPACE, kw_only=True)
    error_type: ClassVar[type[WireError]] = HotlineError
    recorded_pushes: ClassVar[tuple[str, ...] | None] = PUSHES

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
