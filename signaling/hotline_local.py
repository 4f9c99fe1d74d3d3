"""The hotline sockets connected to this node: who is behind each, and per-subject locks."""

from __future__ import annotations

from dataclasses import dataclass

from careline.signaling.identity import Role
from careline.signaling.keyed_locks import KeyedLocks


@dataclass(slots=True)
class LocalSocket:
    """One kiosk or pharmacist socket on this node."""

    sid: str
    role: Role
    sub: str


class LocalSockets:
    """This node's kiosk and pharmacist sockets (the store knows nothing of sockets).

    `kiosks` maps a kiosk id and `pharmacists` a pharmacist's sub to the socket id of their one
    live connection here. `locks` serializes connects and disconnects of one subject.
    """

    def __init__(self) -> None:
        self.sockets: dict[str, LocalSocket] = {}
        self.kiosks: dict[str, str] = {}
        self.pharmacists: dict[str, str] = {}
        self.locks = KeyedLocks()
