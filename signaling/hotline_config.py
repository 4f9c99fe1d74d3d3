"""What the hotline service runs with: its settings and the channel it reaches clients through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

#: Room of every pharmacist console on a node (queue summaries).
PHARMACISTS_ROOM = "hotline:pharmacists"


class HotlineChannel(Protocol):
    """How the service reaches clients (the /hotline socket.io namespace implements it)."""

    async def emit(self, event: str, data: Any, to: str) -> None:
        """Send `event` to one socket id or room."""

    async def enter_room(self, sid: str, room: str) -> None:
        """Add a socket to a room."""

    async def disconnect(self, sid: str) -> None:
        """Close a socket."""


@dataclass(frozen=True, slots=True)
class HotlineConfig:
    """The `[hotline]` settings the service runs with (times in seconds)."""

    ring_timeout_seconds: float = 20.0
    wrap_up_seconds: float = 30.0
    skill_fallback_seconds: float = 60.0
    callback_after_seconds: float = 300.0
    service_level_seconds: float = 60.0
    position_update_seconds: float = 5.0
    reconnect_grace_seconds: float = 30.0
    default_handle_seconds: float = 240.0
    stats_window_seconds: float = 3600.0
    sweep_seconds: float = 0.25
    node_lease_seconds: float = 15.0
    max_queue: int = 1000
    video_codec: str = "vp8"
