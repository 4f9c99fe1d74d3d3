"""ICE host-address selection for the server's peer connections.

aioice gathers host candidates from every interface except 127.0.0.1. Deployments name the
addresses to gather on (`media.host_addresses`); tests and benchmarks use 127.0.0.1 only.
The setting is process-wide because aioice reads a module-level function.
"""

from __future__ import annotations

from collections.abc import Sequence

import aioice.ice

_original = aioice.ice.get_host_addresses
_chosen: tuple[str, ...] = ()


def _configured(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [a for a in _chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Gather host candidates on exactly `addresses` (empty: aioice's own choice, all but lo)."""
    global _chosen
    _chosen = tuple(addresses)
    aioice.ice.get_host_addresses = _configured if _chosen else _original
