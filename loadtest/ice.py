"""Where aiortc peer connections of this process gather ICE candidates: only given addresses.

aioice's `get_host_addresses` lists every interface address except 127.0.0.1, so a test or a
benchmark would otherwise gather on real interfaces and never on loopback. `restrict_host_addresses`
replaces that module global (looked up by `Connection.gather_candidates` at call time) for the
whole process: every RTCPeerConnection created afterwards, including the server's if it runs in
the same process, gathers host candidates on the given addresses only.

Restricting host addresses is not enough to keep traffic on loopback: build every peer
connection as `RTCPeerConnection(loopback_configuration())`, i.e. with `iceServers=[]`. With
`iceServers=None` (aiortc's default) aiortc adds stun:stun.l.google.com:19302, which must never
be contacted from here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

import aioice.ice
from aiortc import RTCBundlePolicy, RTCConfiguration

from careline.loadtest.aiortc_internals import require_attribute

LOOPBACK = ("127.0.0.1",)

_SEAM = "restrict_host_addresses"
_FUNCTION = "get_host_addresses"
_addresses: tuple[str, ...] = ()
_original: Callable[[bool, bool], list[str]] | None = None


def restrict_host_addresses(addresses: Sequence[str] = LOOPBACK) -> None:
    """Gather host candidates only on `addresses` (IP literals), process-wide.

    Idempotent; a later call replaces the list. Call it before creating peer connections and
    undo it with `restore_host_addresses()`. ValueError if the list is empty or not all IPs.
    """
    global _addresses, _original
    if not addresses:
        raise ValueError("at least one host address is needed to gather candidates")
    parsed = tuple(str(ipaddress.ip_address(address)) for address in addresses)
    current = require_attribute(aioice.ice, _FUNCTION, _SEAM)
    require_attribute(aioice.ice.Connection, "gather_candidates", _SEAM)
    _addresses = parsed
    if current is not _restricted_host_addresses:
        _original = aioice.ice.get_host_addresses
        setattr(aioice.ice, _FUNCTION, _restricted_host_addresses)


def restore_host_addresses() -> None:
    """Undo `restrict_host_addresses` (safe to call when it never ran)."""
    global _addresses, _original
    if _original is not None:
        setattr(aioice.ice, _FUNCTION, _original)
        _original = None
    _addresses = ()


def restricted_host_addresses() -> tuple[str, ...]:
    """The addresses candidates are gathered on, or () when unrestricted."""
    return _addresses


def loopback_configuration() -> RTCConfiguration:
    """No STUN/TURN servers (aiortc's default would add Google's), and max-bundle.

    With aiortc's default bundle policy (balanced), a second video m-line in the first offer
    shares a transport that bundling then discards, and its track never receives; Careline's
    server offers several video m-lines, so its clients must use max-bundle.
    """
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def _restricted_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [
        address
        for address in _addresses
        if (use_ipv4 and ipaddress.ip_address(address).version == 4)
        or (use_ipv6 and ipaddress.ip_address(address).version == 6)
    ]
