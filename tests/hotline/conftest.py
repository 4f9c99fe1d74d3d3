"""Fixtures for the hotline: a real server with short timers, kiosks registered over REST."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aiohttp
import pytest

from careline.loadtest.clips import Clip
from careline.loadtest.hotline_client import HotlineClient
from careline.loadtest.ice import restrict_host_addresses
from careline.server.app_keys import SIO
from careline.server.hotline_wiring import order_tokens
from careline.server.settings import Settings
from careline.signaling.identity import Role
from tests.support import RunningServer, eventually, make_settings, running_server

T = TypeVar("T")

#: Short timers so the tests run in seconds (ring 1.5 s, wrap-up 0.6 s, grace 1 s).
FAST: dict[str, Any] = {
    "media.host_addresses": ["127.0.0.1"],
    "media.keyframe_interval_seconds": 0.2,
    "hotline.ring_timeout_seconds": 1.5,
    "hotline.wrap_up_seconds": 0.6,
    "hotline.skill_fallback_seconds": 2.0,
    "hotline.callback_after_seconds": 60.0,
    "hotline.position_update_seconds": 0.5,
    "hotline.reconnect_grace_seconds": 1.0,
    "hotline.sweep_seconds": 0.05,
    "hotline.order_secret": "order-secret-" + "y" * 40,
}


async def poll(
    fetch: Callable[[], Awaitable[T]], where: Callable[[T], bool], within: float = 5.0
) -> T:
    """Fetch until `where(value)` holds (AssertionError after `within` seconds); the value."""
    value = await fetch()
    for _ in range(int(within / 0.02)):
        if where(value):
            return value
        await asyncio.sleep(0.02)
        value = await fetch()
    raise AssertionError(f"condition not met in {within} s: last value {value!r}")


def hotline_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Loopback settings with the hotline's short timers."""
    return make_settings(data_dir, **{**FAST, **overrides})


def order_token(
    settings: Settings, order_id: str, ttl: int = 600, skills: tuple[str, ...] = ()
) -> str:
    """An order token as the pharmacy system would print it."""
    return order_tokens(settings, time.time).issue(order_id, ttl, skills).token


class Ringing(NamedTuple):
    """A pharmacist console rung for a kiosk's call (`call`: the kiosk's placing reply)."""

    pharmacist: HotlineClient
    kiosk: HotlineClient
    call: dict[str, Any]


class Answered(NamedTuple):
    """A call the pharmacist accepted (`accepted`: the accept's reply)."""

    pharmacist: HotlineClient
    kiosk: HotlineClient
    call: dict[str, Any]
    accepted: dict[str, Any]


class Hotline:
    """A running server plus helpers: admin REST, kiosks, pharmacists; closes its clients."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.url = server.url
        self.settings = server.settings
        self.admin = server.token(Role.ADMIN, "admin-1")
        self.clients: list[HotlineClient] = []
        self._orders = 0

    async def rest(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.admin}"} if token != "" else {}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.url + path, json=body, headers=headers) as response,
        ):
            return response.status, await response.json()

    async def register_kiosk(self, kiosk_id: str, skills: tuple[str, ...] = ()) -> tuple[str, str]:
        """Register a kiosk; returns (kiosk_id, secret)."""
        status, body = await self.rest(
            "POST", "/api/kiosks", {"kiosk_id": kiosk_id, "skills": list(skills)}
        )
        assert status == 201, body
        return body["kiosk"]["kiosk_id"], body["secret"]

    async def kiosk_token(self, kiosk_id: str, secret: str) -> str:
        status, body = await self.rest(
            "POST", f"/api/kiosks/{kiosk_id}/token", {"secret": secret}, token=""
        )
        assert status == 201, body
        return str(body["token"])

    def order(self, skills: tuple[str, ...] = (), ttl: int = 600) -> str:
        self._orders += 1
        return order_token(self.settings, f"ord-{self._orders}", ttl, skills)

    async def registered_kiosk(self, kiosk_id: str) -> tuple[str, str]:
        """Register a kiosk and exchange its secret; returns (kiosk token, secret)."""
        _, secret = await self.register_kiosk(kiosk_id)
        return await self.kiosk_token(kiosk_id, secret), secret

    async def connect(self, token: str, video: Clip | None = None) -> HotlineClient:
        """A client connected with `token` (closed by `close`)."""
        client = HotlineClient(self.url, token, video=video)
        self.clients.append(client)
        await client.connect()
        return client

    async def kiosk(
        self, kiosk_id: str, skills: tuple[str, ...] = (), video: Clip | None = None
    ) -> HotlineClient:
        """A registered, connected kiosk."""
        _, secret = await self.register_kiosk(kiosk_id, skills)
        return await self.connect(await self.kiosk_token(kiosk_id, secret), video=video)

    async def pharmacist(
        self,
        sub: str,
        skills: tuple[str, ...] = (),
        available: bool = True,
        video: Clip | None = None,
    ) -> HotlineClient:
        """A connected pharmacist console (available unless told otherwise)."""
        if skills:
            status, body = await self.rest(
                "PUT", f"/api/hotline/pharmacists/{sub}", {"skills": list(skills)}
            )
            assert status == 200, body
        client = await self.connect(self.server.token(Role.PHARMACIST, sub), video=video)
        if available:
            await client.available()
        return client

    async def ringing(
        self, pharmacist: str = "ph-1", kiosk: str = "k-1", video: Clip | None = None
    ) -> Ringing:
        """An available pharmacist rung for the call a new kiosk just placed."""
        console = await self.pharmacist(pharmacist, video=video)
        caller = await self.kiosk(kiosk, video=video)
        call = await caller.place_call(self.order())
        await console.wait_event("hotline.offer")
        return Ringing(console, caller, call)

    async def answered(
        self, pharmacist: str = "ph-1", kiosk: str = "k-1", video: Clip | None = None
    ) -> Answered:
        """As `ringing`, then the pharmacist accepts; `accepted` is the accept's reply."""
        rung = await self.ringing(pharmacist, kiosk, video)
        accepted = await rung.pharmacist.accept(rung.call["call_id"])
        return Answered(rung.pharmacist, rung.kiosk, rung.call, accepted)

    async def record(self, call_id: str) -> dict[str, Any]:
        status, body = await self.rest("GET", f"/api/hotline/calls/{call_id}")
        assert status == 200, body
        return dict(body)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        sio = self.server.app[SIO]
        await eventually(lambda: not sio.eio.sockets)  # the server saw every close


@pytest.fixture
async def hotline(tmp_path: Path) -> AsyncIterator[Hotline]:
    """A hotline server (SQLite) with short timers and ICE on 127.0.0.1 only."""
    restrict_host_addresses(["127.0.0.1"])
    async with running_server(hotline_settings(tmp_path / "data")) as server:
        helper = Hotline(server)
        try:
            yield helper
        finally:
            await helper.close()
