"""A video-visit participant over the public wire: socket.io (/visit, msgpack) and WebRTC.

Used by the load tester, the SFU benchmark and the integration tests, so it speaks only the
documented protocol (docs/protocol.md) and can target any Careline deployment. It publishes
pre-encoded clips (no encoder runs) and counts received frames without decoding them; the
socket and the media negotiation are WireClient's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from careline.loadtest.wire_client import MEDIA_PUSHES, WireClient, WireError

NAMESPACE = "/visit"
#: `visit.join` redirects followed at most (a visit is re-placed at most once per dead node).
MAX_MOVES = 3
#: Pause between attempts while the node that held a visit is not yet known to be dead.
RETRY_SECONDS = 0.25
#: Server pushes a participant records (name, data) in `events`.
PUSHES = (
    "visit.roster",
    "visit.waiting_room",
    "visit.admitted",
    "visit.denied",
    "visit.removed",
    "visit.ended",
    "visit.replaced",
    "visit.quality",
    "visit.moved",
    *MEDIA_PUSHES,
)


class VisitError(WireError):
    """The server answered a /visit event with an error ack, or refused the connection."""


@dataclass
class VisitClient(WireClient):
    """One participant. Call `connect`, `join`, then `start_media` once admitted."""

    namespace: str = field(default=NAMESPACE, kw_only=True)
    error_type: ClassVar[type[WireError]] = VisitError
    recorded_pushes: ClassVar[tuple[str, ...] | None] = PUSHES

    def __post_init__(self) -> None:
        super().__post_init__()
        self.participant_id: str | None = None

    async def join(self, visit_id: str) -> dict[str, Any]:
        """`visit.join`; remembers the participant id.

        With several nodes, a join on a node that does not hold the visit's media is answered
        with `visit.wrong_node` and the node's URL: the client moves there and joins again.
        """
        for _ in range(MAX_MOVES):
            try:
                data: dict[str, Any] = await self.call("visit.join", {"visit_id": visit_id})
            except VisitError as exc:
                node_url = exc.details.get("node_url")
                if exc.code != "visit.wrong_node" or not isinstance(node_url, str):
                    raise
                await self.move_to(node_url)
                continue
            self.participant_id = data["participant_id"]
            return data
        raise VisitError("visit.join", "visit.wrong_node", "too many redirects")

    async def rejoin(
        self, visit_id: str, entry_urls: Sequence[str], within: float = 15.0
    ) -> dict[str, Any]:
        """After losing the node that held the visit: connect through any entry node, join
        (following redirects) and return the join reply; the caller starts media again.

        Until the dead node's lease runs out the visit is still placed on it; the join's
        redirect then fails to connect, and the client tries again through the next entry.
        """
        deadline = time.monotonic() + within
        attempt = 0
        while True:
            url = entry_urls[attempt % len(entry_urls)]
            attempt += 1
            try:
                await self.move_to(url, within=2.0)
                return await self.join(visit_id)
            except VisitError as exc:
                if time.monotonic() > deadline or exc.code not in _RETRIED:
                    raise
            await asyncio.sleep(RETRY_SECONDS)


#: Failures while a dead node still holds a visit: the redirect's connect is refused.
_RETRIED = frozenset({"connect_failed", "disconnected", "timeout", "visit.wrong_node"})
