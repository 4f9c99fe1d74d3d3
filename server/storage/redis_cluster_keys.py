"""The Redis keys of the node registry, visit placement and room relay.

Every key carries the hash tag `{cluster}` (one slot), so one Lua script may read the leases
and write a placement.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClusterKeys:
    """Key names under `<prefix>:{cluster}:`."""

    #: sorted set: node id -> lease end (Unix seconds)
    leases: str
    #: hash: node id -> msgpack NodeInfo
    nodes: str
    #: string per visit (`placement` + visit id): the owner node id
    placement: str
    #: hash: node id -> visits placed on it since its last heartbeat
    placed: str
    #: pub/sub channel of relayed room pushes
    rooms_channel: str

    @classmethod
    def under(cls, prefix: str) -> ClusterKeys:
        """The cluster keys under `prefix`."""
        base = f"{prefix}:{{cluster}}"
        return cls(
            leases=f"{base}:leases",
            nodes=f"{base}:nodes",
            placement=f"{base}:visit:",
            placed=f"{base}:placed",
            rooms_channel=f"{base}:rooms",
        )
