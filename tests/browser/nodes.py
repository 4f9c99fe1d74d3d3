"""Several nodes in the browser tests' namespace: entry proxies, node settings, checks.

The redis-server and the `careline serve` nodes are started from the namespaced loop's thread,
so they are in the loopback-only namespace too (`same_netns`). Pages are opened through an
`TcpProxy` (tests/browser/harness.py), as behind a load balancer that skips dead nodes.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp

from tests.support import SECRET

#: A dead node's visits are re-placed after its lease; short here, so the failover is quick.
LEASE_SECONDS = 3.0


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def node_env(redis_url: str, allowed_origins: Sequence[str]) -> dict[str, str]:
    return {
        "CARELINE_AUTH_SECRET": SECRET,
        "CARELINE_STORE_BACKEND": "redis",
        "CARELINE_STORE_REDIS_URL": redis_url,
        "CARELINE_STORE_REDIS_PREFIX": f"browser-{uuid.uuid4().hex}",
        "CARELINE_MEDIA_HOST_ADDRESSES": "127.0.0.1",
        "CARELINE_MEDIA_KEYFRAME_INTERVAL_SECONDS": "0.2",
        "CARELINE_CLUSTER_NODE_LEASE_SECONDS": str(LEASE_SECONDS),
        "CARELINE_CLUSTER_ALLOWED_ORIGINS": ",".join(allowed_origins),
        "CARELINE_SERVER_LOG_LEVEL": "warning",
        "CARELINE_SERVER_SHUTDOWN_TIMEOUT_SECONDS": "2",
    }


def same_netns(pid: int) -> bool:
    """Whether process `pid` is in this thread's network namespace."""
    mine = os.readlink(f"/proc/self/task/{threading.get_native_id()}/ns/net")
    return os.readlink(f"/proc/{pid}/ns/net") == mine


async def json_request(
    http: aiohttp.ClientSession, method: str, url: str, token: str, body: Any = None
) -> Any:
    async with http.request(
        method, url, json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status < 300, await response.text()
        return await response.json()


async def live_nodes(http: aiohttp.ClientSession, url: str, admin: str) -> list[str]:
    listed = await json_request(http, "GET", url + "/api/cluster/nodes", admin)
    return sorted(node["url"] for node in listed["nodes"])


async def until(predicate: Any, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)
