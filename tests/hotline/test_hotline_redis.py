"""Two `careline serve` processes sharing one redis-server: every call is dispatched once.

Kiosks and pharmacists are spread over both nodes; either node routes any call to the globally
longest-idle pharmacist in one Lua script, and rings reach a pharmacist on the other node over
the node bus (Redis pub/sub). A node killed with SIGKILL loses its lease: the other node frees
the calls its pharmacists were ringing for.
"""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from careline.loadtest.hotline_client import HotlineClient
from careline.server.settings import Settings
from careline.signaling.identity import Role
from tests.hotline.conftest import FAST, order_token, poll
from tests.support import SECRET, RedisServer, careline_serve, issue, make_settings

pytestmark = pytest.mark.redis

LISTENING = re.compile(rb"careline listening on (http://\S+)")


@asynccontextmanager
async def node(
    data_dir: Path, redis: RedisServer, prefix: str, **extra: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`careline serve` on the shared Redis, with the hotline's short timers."""
    env = {
        "CARELINE_AUTH_SECRET": SECRET,
        "CARELINE_STORE_BACKEND": "redis",
        "CARELINE_STORE_REDIS_URL": redis.url,
        "CARELINE_STORE_REDIS_PREFIX": prefix,
        "CARELINE_MEDIA_HOST_ADDRESSES": "127.0.0.1",
        "CARELINE_HOTLINE_NODE_LEASE_SECONDS": "1.5",
        "CARELINE_SERVER_LOG_LEVEL": "warning",
    }
    for key, value in FAST.items():
        section, _, name = key.partition(".")
        if section == "hotline":
            env[f"CARELINE_HOTLINE_{name.upper()}"] = str(value)
    env.update(extra)
    async with careline_serve(data_dir, env) as served:
        yield served.process, served.url


class Cluster:
    """Helpers over two nodes: REST on either, clients on a chosen node."""

    def __init__(self, settings: Settings, urls: list[str]) -> None:
        self.settings = settings
        self.urls = urls
        self.admin = issue(settings, Role.ADMIN, "admin-1")
        self.clients: list[HotlineClient] = []
        self._orders = 0

    async def rest(self, method: str, path: str, body: Any = None, token: str = "") -> Any:
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.urls[0] + path, json=body, headers=headers) as response,
        ):
            assert response.status < 300, await response.text()
            return await response.json()

    async def kiosk(self, kiosk_id: str, on: int) -> HotlineClient:
        registered = await self.rest("POST", "/api/kiosks", {"kiosk_id": kiosk_id})
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.urls[1]}/api/kiosks/{kiosk_id}/token",
                json={"secret": registered["secret"]},
            ) as response,
        ):
            token = (await response.json())["token"]
        return await self._connect(HotlineClient(self.urls[on], token))

    async def pharmacist(self, sub: str, on: int) -> HotlineClient:
        client = await self._connect(
            HotlineClient(self.urls[on], issue(self.settings, Role.PHARMACIST, sub))
        )
        await client.available()
        return client

    async def _connect(self, client: HotlineClient) -> HotlineClient:
        self.clients.append(client)
        await client.connect()
        return client

    def order(self) -> str:
        self._orders += 1
        return order_token(self.settings, f"ord-{self._orders}")

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


@pytest.fixture
def cluster_settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path / "tokens", **{"hotline.order_secret": FAST["hotline.order_secret"]}
    )


async def test_two_nodes_dispatch_every_call_exactly_once(
    tmp_path: Path, redis: RedisServer, cluster_settings: Settings
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    async with (
        node(tmp_path / "a", redis, prefix) as (_, url_a),
        node(tmp_path / "b", redis, prefix) as (_, url_b),
    ):
        cluster = Cluster(cluster_settings, [url_a, url_b])
        try:
            pharmacists = [await cluster.pharmacist(f"ph-{i}", on=i % 2) for i in range(6)]
            kiosks = [await cluster.kiosk(f"k-{i}", on=i % 2) for i in range(12)]
            placed = await asyncio.gather(*(k.place_call(cluster.order()) for k in kiosks))
            call_ids = {c["call_id"] for c in placed}
            # Six pharmacists ring for six distinct calls, each offered to exactly one of them.
            offers = await poll(
                lambda: _offers(pharmacists), lambda found: len(found) >= 6, within=10
            )
            await asyncio.sleep(0.5)  # time for any double offer to show up
            offers = await _offers(pharmacists)
            assert len(offers) == 6
            assert len({call_id for call_id, _ in offers}) == 6
            assert Counter(sub for _, sub in offers) == {f"ph-{i}": 1 for i in range(6)}
            # Each pharmacist answers; their kiosks (on either node) see the call connected.
            answered: dict[str, HotlineClient] = {}
            for client in pharmacists:
                offer = client.pushes("hotline.offer")[0]
                await client.accept(offer["call_id"])
                answered[offer["call_id"]] = client
            for kiosk, call in zip(kiosks, placed, strict=True):
                if call["call_id"] in answered:
                    await kiosk.wait_event(
                        "hotline.call", where=lambda c: c["state"] == "connected", within=5
                    )
            # Hang up: after wrap-up each pharmacist takes exactly one more call.
            for client in pharmacists:
                await client.call("hotline.end")
            await poll(lambda: _offers(pharmacists), lambda found: len(found) >= 12, within=10)
            await asyncio.sleep(0.5)
            offers = await _offers(pharmacists)
            assert len(offers) == 12
            assert {call_id for call_id, _ in offers} == call_ids
            for call_id in call_ids:
                record = await cluster.rest("GET", f"/api/hotline/calls/{call_id}")
                assert record["offers"] == 1
        finally:
            await cluster.close()


async def test_the_longest_idle_pharmacist_gets_the_call_whatever_node_holds_them(
    tmp_path: Path, redis: RedisServer, cluster_settings: Settings
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    # Sweeps only every 10 s (the most allowed): rings and answers must come from dispatch
    # rounds and node notices, not from a sweep catching up.
    quiet = {
        "CARELINE_HOTLINE_SWEEP_SECONDS": "10",
        "CARELINE_HOTLINE_NODE_LEASE_SECONDS": "120",
    }
    async with (
        node(tmp_path / "a", redis, prefix, **quiet) as (_, url_a),
        node(tmp_path / "b", redis, prefix, **quiet) as (_, url_b),
    ):
        cluster = Cluster(cluster_settings, [url_a, url_b])
        try:
            idle_longer = await cluster.pharmacist("ph-a", on=0)
            idle_shorter = await cluster.pharmacist("ph-b", on=1)
            kiosk_b = await cluster.kiosk("k-b", on=1)
            placed = await kiosk_b.place_call(cluster.order())
            offer = await idle_longer.wait_event("hotline.offer", within=5)
            assert offer["call_id"] == placed["call_id"]
            assert idle_shorter.pushes("hotline.offer") == []
            await idle_longer.accept(offer["call_id"])
            await kiosk_b.wait_event(
                "hotline.call", where=lambda c: c["state"] == "connected", within=5
            )
            # A call placed on node A goes to the one pharmacist left, on node B.
            kiosk_a = await cluster.kiosk("k-a", on=0)
            second = await kiosk_a.place_call(cluster.order())
            offer = await idle_shorter.wait_event("hotline.offer", within=5)
            assert offer["call_id"] == second["call_id"]
            await asyncio.sleep(0.3)  # time for any double offer to show up
            assert len(idle_longer.pushes("hotline.offer")) == 1
            assert len(idle_shorter.pushes("hotline.offer")) == 1
            for call in (placed, second):
                record = await cluster.rest("GET", f"/api/hotline/calls/{call['call_id']}")
                assert record["offers"] == 1
        finally:
            await cluster.close()


async def test_a_killed_node_loses_its_lease_and_its_ringing_call_is_requeued(
    tmp_path: Path, redis: RedisServer, cluster_settings: Settings
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    slow_ring = {"CARELINE_HOTLINE_RING_TIMEOUT_SECONDS": "60"}  # only the lease can free it
    async with node(tmp_path / "a", redis, prefix, **slow_ring) as (_, url_a):
        cluster = Cluster(cluster_settings, [url_a, url_a])
        try:
            async with node(tmp_path / "b", redis, prefix, **slow_ring) as (process_b, url_b):
                cluster.urls[1] = url_b
                doomed = await cluster.pharmacist("ph-doomed", on=1)
                kiosk = await cluster.kiosk("k-1", on=0)
                call = await kiosk.place_call(cluster.order())
                await doomed.wait_event("hotline.offer", within=5)
                process_b.send_signal(signal.SIGKILL)  # no goodbye: only the lease tells
                await process_b.wait()
            survivor = await cluster.pharmacist("ph-survivor", on=0)
            offered = await survivor.wait_event("hotline.offer", within=10)
            assert offered["call_id"] == call["call_id"]
            stats = await cluster.rest("GET", "/api/hotline/stats")
            assert stats["pharmacists"]["offline"] == 1
            record = await cluster.rest("GET", f"/api/hotline/calls/{call['call_id']}")
            requeued = [e for e in record["events"] if e["action"] == "requeued"]
            assert requeued[0]["detail"]["reason"] == "pharmacist_disconnected"
        finally:
            await cluster.close()


async def _offers(pharmacists: list[HotlineClient]) -> list[tuple[str, str]]:
    """(call id, pharmacist) of every offer received so far."""
    found = []
    for index, client in enumerate(pharmacists):
        for offer in client.pushes("hotline.offer"):
            found.append((str(offer["call_id"]), f"ph-{index}"))
    return found
