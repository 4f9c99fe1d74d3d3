"""Host candidate gathering restricted to given addresses; no STUN server by default."""

from __future__ import annotations

from collections.abc import Iterator

import aioice.ice
import pytest

from careline.loadtest.ice import (
    loopback_configuration,
    restore_host_addresses,
    restrict_host_addresses,
    restricted_host_addresses,
)


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    original = aioice.ice.get_host_addresses
    try:
        yield
    finally:
        restore_host_addresses()
        assert aioice.ice.get_host_addresses is original


def test_restriction_replaces_aioice_host_discovery_idempotently() -> None:
    original = aioice.ice.get_host_addresses

    restrict_host_addresses(["127.0.0.1"])
    patched = aioice.ice.get_host_addresses
    restrict_host_addresses(["127.0.0.1"])

    assert aioice.ice.get_host_addresses is patched
    assert patched is not original
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
    assert restricted_host_addresses() == ("127.0.0.1",)
    restore_host_addresses()
    assert aioice.ice.get_host_addresses is original
    assert restricted_host_addresses() == ()
    restore_host_addresses()  # safe twice


def test_addresses_are_filtered_by_family_and_a_later_call_replaces_them() -> None:
    restrict_host_addresses(["127.0.0.1", "::1"])
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == ["::1"]

    restrict_host_addresses(["127.0.0.2"])
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.2"]


@pytest.mark.parametrize("addresses", [[], ["localhost"], ["127.0.0.1", "not an ip"]])
def test_bad_address_lists_are_refused(addresses: list[str]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - ipaddress's own messages
        restrict_host_addresses(addresses)
    assert restricted_host_addresses() == ()


def test_loopback_configuration_has_no_ice_servers() -> None:
    assert loopback_configuration().iceServers == []
