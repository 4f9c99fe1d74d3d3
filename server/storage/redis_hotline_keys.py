"""The Redis keys of the hotline, shared by its store, its dispatch and its node bus.

Every key carries the hash tag `{hotline}` (one slot), so one Lua script may touch them all.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HotlineKeys:
    """Key names under `<prefix>:{hotline}:` (see redis_hotline.py for what each holds)."""

    calls: str
    call_versions: str
    open: str
    kiosk_open: str
    by_time: str
    presence: str
    presence_versions: str
    kiosks: str
    kiosk_versions: str
    skills: str
    nodes: str
    queue: str
    queue_requeued: str
    available: str
    node_channel: str

    @classmethod
    def under(cls, prefix: str) -> HotlineKeys:
        """The keys of the hotline under `prefix`."""
        base = f"{prefix}:{{hotline}}"
        return cls(
            calls=f"{base}:calls",
            call_versions=f"{base}:call_versions",
            open=f"{base}:open",
            kiosk_open=f"{base}:kiosk_open",
            by_time=f"{base}:by_time",
            presence=f"{base}:presence",
            presence_versions=f"{base}:presence_versions",
            kiosks=f"{base}:kiosks",
            kiosk_versions=f"{base}:kiosk_versions",
            skills=f"{base}:skills",
            nodes=f"{base}:nodes",
            queue=f"{base}:queue",
            queue_requeued=f"{base}:queue_requeued",
            available=f"{base}:available",
            node_channel=f"{base}:node:",
        )

    def channel_of(self, node: str) -> str:
        """The pub/sub channel of one node's notices."""
        return self.node_channel + node
