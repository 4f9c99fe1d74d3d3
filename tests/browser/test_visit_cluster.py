"""The video visit page with two nodes on one Redis: the page follows `visit.wrong_node` to the
node holding the visit's media (another origin than the page's), and survives that node's death.

Everything runs in the harness's loopback-only namespace: the redis-server and both
`careline serve` nodes are started from the namespaced loop's thread, so they are in it too
(checked below). Each page is opened through an entry proxy, as behind a load balancer: entry A
prefers node A, entry B node B, and each falls back to the other node when its first choice
refuses the connection. The nodes accept sockets from the entries' origins
(`cluster.allowed_origins`), and a redirected page talks to its node directly (cross-origin).
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import expect

from careline.signaling.identity import Role
from tests.browser.harness import BrowserEnv, TcpProxy, body_data, video_playing
from tests.browser.nodes import (
    json_request,
    live_nodes,
    node_env,
    port_of,
    same_netns,
    until,
)
from tests.browser.test_visit import join, tile
from tests.support import ServeProcess, careline_serve, issue, make_settings, redis_server

pytestmark = pytest.mark.redis


def test_pages_follow_the_visit_to_its_node_and_fail_over(
    browser_env: BrowserEnv, tmp_path: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(tmp_path / "tokens")
        admin = issue(settings, Role.ADMIN, "admin-1")
        async with AsyncExitStack() as stack:
            redis = stack.enter_context(redis_server())
            assert same_netns(redis.process.pid)
            entries = [TcpProxy(), TcpProxy()]
            for entry in entries:
                await entry.start()
                stack.push_async_callback(entry.close)
            env = node_env(redis.url, [entry.origin for entry in entries])
            nodes: list[ServeProcess] = list(
                await asyncio.gather(
                    *(
                        stack.enter_async_context(careline_serve(tmp_path / name, env))
                        for name in ("a", "b")
                    )
                )
            )
            assert all(same_netns(node.process.pid) for node in nodes)
            urls = [node.url for node in nodes]
            entries[0].targets = [port_of(urls[0]), port_of(urls[1])]
            entries[1].targets = [port_of(urls[1]), port_of(urls[0])]
            http = await stack.enter_async_context(aiohttp.ClientSession())
            # entered last: the pages are closed before the nodes and proxies stop
            await stack.enter_async_context(browser_env.closing_pages())
            await until(lambda: _both_live(http, urls, admin), within=10)

            created = await json_request(
                http,
                "POST",
                urls[0] + "/api/visits",
                issue(settings, Role.CLINICIAN, "c-1"),
                {"participants": [{"kind": "parent"}], "codec": "vp8"},
            )
            links = {p["kind"]: p["link"] for p in created["invited"]}
            ids = {p["kind"]: p["participant_id"] for p in created["invited"]}

            # the parent enters through node B, the clinician through node A
            parent = await browser_env.page(entries[1].origin + links["parent"])
            await join(parent)
            await expect(
                parent.get_by_role("heading", name="You are in the waiting room")
            ).to_be_visible()
            clinician = await browser_env.page(entries[0].origin + links["clinician"])
            await join(clinician)
            await clinician.locator(f"#admit-{ids['parent']}").click()
            await video_playing(parent, tile(ids["clinician"]))
            await video_playing(clinician, tile(ids["parent"]))

            # exactly one of them was sent to the other node, by its own URL (another origin)
            moved = {
                "parent": await body_data(parent, "visitNode"),
                "clinician": await body_data(clinician, "visitNode"),
            }
            assert sorted(moved.values()).count("") == 1, moved
            owner_url = moved["parent"] or moved["clinician"]
            assert owner_url in urls
            owner = urls.index(owner_url)
            assert owner == (0 if moved["parent"] else 1)
            await browser_env.screenshot(parent, "1-parent-in-call")
            await browser_env.screenshot(clinician, "2-clinician-in-call")

            # the node holding the visit dies: both pages rejoin through their entry, the
            # visit is placed on the other node after the lease, and video plays again
            before = {
                "parent": await parent.locator(tile(ids["clinician"])).get_attribute("data-tracks"),
                "clinician": await clinician.locator(tile(ids["parent"])).get_attribute(
                    "data-tracks"
                ),
            }
            killed_at = asyncio.get_running_loop().time()
            nodes[owner].kill()
            survivor = urls[1 - owner]
            for page, other, who in (
                (parent, "clinician", "parent"),
                (clinician, "parent", "clinician"),
            ):
                await page.wait_for_function(
                    "([sel, before]) => document.querySelector(sel)?.dataset.tracks !== before",
                    arg=[tile(ids[other]), before[who]],
                    timeout=25000,
                )
                await video_playing(page, tile(ids[other]), within_ms=20000)
                await expect(page.locator("#banner")).to_be_hidden(timeout=10000)
            recovered = asyncio.get_running_loop().time() - killed_at
            # the page that was on the dead node came back through its entry (its own origin)
            # and was sent to the survivor or is served by it through that entry
            for page in (parent, clinician):
                assert await body_data(page, "visitNode") in ("", survivor)
            assert recovered < 20, f"video back {recovered:.1f} s after the kill"
            await browser_env.screenshot(parent, "3-parent-after-failover")
            await browser_env.screenshot(clinician, "4-clinician-after-failover")

    browser_env.run(scenario(), timeout=110)


async def _both_live(http: aiohttp.ClientSession, urls: list[str], admin: str) -> bool:
    try:
        return await live_nodes(http, urls[0], admin) == sorted(urls)
    except (aiohttp.ClientError, AssertionError):
        return False
