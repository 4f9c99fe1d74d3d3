"""The kiosk screen and the pharmacist console on two nodes sharing one Redis.

The kiosk is opened through an entry proxy that prefers node A (and falls back to B), the
console through one that reaches only B. The call's media lives on the kiosk's node, so the
console does its media over a media-only socket to A (another origin: `cluster.allowed_origins`).
When A dies the kiosk comes back through its entry on B, the console is told the media moved,
and the call goes on with video on B.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from careline.server.settings import Settings
from careline.signaling.identity import Role
from tests.browser.harness import BrowserEnv, TcpProxy, body_data
from tests.browser.nodes import live_nodes, node_env, port_of, same_netns, until
from tests.browser.test_hotline import (
    HOTLINE,
    connect_call,
    frames_advancing,
    go_available,
    open_console,
    open_kiosk,
    order_token,
    type_code,
)
from tests.support import ServeProcess, careline_serve, issue, make_settings, redis_server

pytestmark = pytest.mark.redis


@dataclass
class Entry:
    """Pages loaded through an entry proxy (the `Served` of the hotline page helpers)."""

    url: str
    settings: Settings

    def token(self, role: Role, sub: str, **claims: Any) -> str:
        return issue(self.settings, role, sub, **claims)


def hotline_env(redis_url: str, origins: list[str]) -> dict[str, str]:
    """The nodes' settings: the browser cluster's, the hotline's short timers."""
    return node_env(redis_url, origins) | {
        "CARELINE_STORE_REDIS_PREFIX": f"browser-hotline-{uuid.uuid4().hex}",
        "CARELINE_HOTLINE_ORDER_SECRET": str(HOTLINE["hotline.order_secret"]),
        "CARELINE_HOTLINE_POSITION_UPDATE_SECONDS": "0.5",
        "CARELINE_HOTLINE_SWEEP_SECONDS": "0.1",
        "CARELINE_HOTLINE_WRAP_UP_SECONDS": "3",
        "CARELINE_HOTLINE_RECONNECT_GRACE_SECONDS": "30",
        "CARELINE_HOTLINE_NODE_LEASE_SECONDS": "3",
    }


def test_the_console_follows_the_calls_media_to_the_kiosks_node(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(
            tmp_path / "tokens", **{"hotline.order_secret": HOTLINE["hotline.order_secret"]}
        )
        admin = issue(settings, Role.ADMIN, "admin-1")
        async with AsyncExitStack() as stack:
            redis = stack.enter_context(redis_server())
            kiosk_entry, console_entry = TcpProxy(), TcpProxy()
            for entry in (kiosk_entry, console_entry):
                await entry.start()
                stack.push_async_callback(entry.close)
            env = hotline_env(redis.url, [kiosk_entry.origin, console_entry.origin])
            nodes: list[ServeProcess] = list(
                await asyncio.gather(
                    *(
                        stack.enter_async_context(careline_serve(tmp_path / name, env))
                        for name in ("a", "b")
                    )
                )
            )
            assert all(same_netns(node.process.pid) for node in nodes)
            a, b = (node.url for node in nodes)
            kiosk_entry.targets = [port_of(a), port_of(b)]
            console_entry.targets = [port_of(b)]
            http = await stack.enter_async_context(aiohttp.ClientSession())
            # entered last: the pages are closed before the nodes and proxies stop
            await stack.enter_async_context(browser_env.closing_pages())

            async def both_live() -> bool:
                return await live_nodes(http, b, admin) == sorted([a, b])

            await until(both_live, within=10)

            kiosk = await open_kiosk(browser_env, Entry(kiosk_entry.origin, settings), "k-1")
            console = await open_console(browser_env, Entry(console_entry.origin, settings), "p-1")
            await go_available(console)
            await type_code(kiosk, order_token(settings, "ord-200"))
            await connect_call(browser_env, kiosk, console, "ord-200")
            # the kiosk is on A, the console on B: its media went to A
            assert await body_data(console, "mediaNode") == a
            await frames_advancing(console, "#remote")
            await frames_advancing(kiosk, "#remote")
            await browser_env.screenshot(kiosk, "1-kiosk-on-a")
            await browser_env.screenshot(console, "2-console-on-b-media-on-a")

            # A dies: the kiosk comes back through its entry on B, and the call goes on there
            killed_at = asyncio.get_running_loop().time()
            nodes[0].kill()
            await console.wait_for_function("() => !document.body.dataset.mediaNode", timeout=20000)
            await frames_advancing(console, "#remote", within_ms=25000)
            await frames_advancing(kiosk, "#remote", within_ms=25000)
            recovered = asyncio.get_running_loop().time() - killed_at
            assert recovered < 20, f"video back {recovered:.1f} s after the kill"
            await expect(console.locator("#call-order")).to_have_text("ord-200")
            await browser_env.screenshot(kiosk, "3-kiosk-back-on-b")
            await browser_env.screenshot(console, "4-console-media-on-b")

            await console.get_by_role("button", name="End call").click()
            await expect(
                kiosk.get_by_role("heading", name="Thank you for calling.")
            ).to_be_visible()

    browser_env.run(scenario(), timeout=110)
