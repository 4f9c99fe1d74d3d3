"""Three `careline serve` processes on loopback sharing one private redis-server."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from careline.loadtest.clips import Clip, video_clip
from careline.loadtest.ice import restrict_host_addresses
from careline.loadtest.visit_client import VisitClient
from careline.server.settings import Settings
from careline.signaling.identity import Role
from tests.hotline.conftest import poll
from tests.support import SECRET, RedisServer, ServeProcess, careline_serve, issue, make_settings

#: A thread send must be answered within this (a guard against a hang, not a speed limit).
SEND_ANSWERED_WITHIN = 10.0

#: A separate order secret, so the tests can print order tokens the nodes accept.
ORDER_SECRET = "order-secret-" + "y" * 40


@dataclass
class Cluster:
    """Three nodes (A, B, C) on one Redis, and clients made for them (closed at the end)."""

    settings: Settings
    nodes: list[ServeProcess]
    http: aiohttp.ClientSession
    logs: list[Path] = field(default_factory=list)
    visits: list[VisitClient] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def token(self, role: Role, sub: str, **claims: Any) -> str:
        return issue(self.settings, role, sub, **claims)

    async def rest(
        self, method: str, path: str, body: Any = None, *, on: int = 0, token: str = ""
    ) -> Any:
        """A JSON request to node `on` (an admin's unless `token`); fails on an error status."""
        headers = {"Authorization": f"Bearer {token or self.token(Role.ADMIN, 'admin-1')}"}
        async with self.http.request(
            method, self.urls[on] + path, json=body, headers=headers
        ) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def text(self, path: str, *, on: int) -> str:
        async with self.http.get(self.urls[on] + path) as response:
            assert response.status == 200
            return await response.text()

    def visit_client(self, token: str, *, on: int, **kw: Any) -> VisitClient:
        client = VisitClient(self.urls[on], token, **kw)
        self.visits.append(client)
        return client


def node_env(redis: RedisServer, prefix: str) -> dict[str, str]:
    """Environment of every node: Redis, loopback media, the hotline's short timers."""
    return {
        "CARELINE_AUTH_SECRET": SECRET,
        "CARELINE_HOTLINE_ORDER_SECRET": ORDER_SECRET,
        "CARELINE_STORE_BACKEND": "redis",
        "CARELINE_STORE_REDIS_URL": redis.url,
        "CARELINE_STORE_REDIS_PREFIX": prefix,
        "CARELINE_MEDIA_HOST_ADDRESSES": "127.0.0.1",
        "CARELINE_MEDIA_KEYFRAME_INTERVAL_SECONDS": "0.2",
        "CARELINE_HOTLINE_NODE_LEASE_SECONDS": "3",
        "CARELINE_HOTLINE_SWEEP_SECONDS": "0.25",
        "CARELINE_SERVER_LOG_LEVEL": "warning",
        "CARELINE_SERVER_SHUTDOWN_TIMEOUT_SECONDS": "4",
    }


@asynccontextmanager
async def three_nodes(tmp_path: Path, redis: RedisServer, **env: str) -> AsyncIterator[Cluster]:
    """Nodes A, B and C on `redis` (started together, extra `env` on top of `node_env`), each
    registered before the block starts; their logs go to `<tmp_path>/<name>.log`."""
    restrict_host_addresses(["127.0.0.1"])
    node_environment = node_env(redis, f"cluster-{uuid.uuid4().hex}") | env
    settings = make_settings(tmp_path / "tokens", **{"hotline.order_secret": ORDER_SECRET})
    logs = [tmp_path / f"{name}.log" for name in ("a", "b", "c")]
    async with AsyncExitStack() as stack:
        nodes = await asyncio.gather(
            *(
                stack.enter_async_context(
                    careline_serve(tmp_path / log.stem, node_environment, log_file=log)
                )
                for log in logs
            )
        )
        http = await stack.enter_async_context(aiohttp.ClientSession())
        cluster = Cluster(settings, list(nodes), http, logs)
        try:
            await until_registered(cluster, len(nodes))
            yield cluster
        finally:
            for client in cluster.visits:
                await client.close()


@pytest.fixture
async def cluster(tmp_path: Path, redis: RedisServer) -> AsyncIterator[Cluster]:
    """Nodes A, B and C on the session's redis-server."""
    async with three_nodes(tmp_path, redis) as started:
        yield started


async def until_registered(cluster: Cluster, count: int, within: float = 10.0) -> None:
    """Every node is in the registry and every node's last heartbeat saw all of them (the
    room relay sends to other nodes only once a heartbeat has seen them)."""
    await poll(
        lambda: cluster.rest("GET", "/api/cluster/nodes"),
        lambda listed: len(listed["nodes"]) >= count,
        within=within,
    )
    for on in range(count):
        await poll(
            functools.partial(cluster.text, "/metrics", on=on),
            lambda metrics: f"careline_cluster_live_nodes {count}.0" in metrics,
            within=within,
        )


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    cache = Path(tmp_path_factory.mktemp("clips"))
    return video_clip("vp8", width=320, height=240, bitrate=300_000, seconds=2.0, cache_dir=cache)


async def create_visit(cluster: Cluster, *, on: int) -> tuple[str, dict[str, str], dict[str, str]]:
    """A visit with a clinician and a parent, created over REST on node `on`."""
    created = await cluster.rest(
        "POST",
        "/api/visits",
        {"participants": [{"kind": "parent"}], "codec": "vp8"},
        on=on,
        token=cluster.token(Role.CLINICIAN, "c-1"),
    )
    tokens = {p["kind"]: p["token"] for p in created["invited"]}
    ids = {p["kind"]: p["participant_id"] for p in created["invited"]}
    return created["visit"]["visit_id"], tokens, ids


async def in_call(
    cluster: Cluster, clip: Clip, *, doctor_on: int, parent_on: int
) -> tuple[str, dict[str, str], VisitClient, VisitClient]:
    """A visit whose clinician (entering through `doctor_on`) and parent (`parent_on`) get
    each other's video."""
    visit_id, tokens, ids = await create_visit(cluster, on=0)
    doctor = cluster.visit_client(tokens["clinician"], on=doctor_on, video=clip)
    parent = cluster.visit_client(tokens["parent"], on=parent_on, video=clip)
    for client in (doctor, parent):
        await client.connect()
        await client.join(visit_id)
    await doctor.call("visit.admit", {"participant_id": ids["parent"]})
    await doctor.start_media()
    await parent.start_media()
    await doctor.frames_from(ids["parent"], 5, within=15)
    await parent.frames_from(ids["clinician"], 5, within=15)
    return visit_id, ids, doctor, parent


# -- message visits ---------------------------------------------------------------------------


async def thread_socket(cluster: Cluster, *, on: int, sub: str, thread_id: str = "") -> Any:
    """A connected /threads socket of family `sub` on node `on` (optionally a thread's)."""
    claims = {"thread_id": thread_id} if thread_id else {}
    client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    await client.connect(
        cluster.urls[on],
        auth={"token": cluster.token(Role.PARENT, sub, **claims)},
        namespaces=["/threads"],
        transports=["websocket"],
    )
    return client


async def send(client: Any, thread_id: str, client_msg_id: str) -> dict[str, Any]:
    """`thread.send`; the ack (ok or error), or a made-up error if none came."""
    try:
        reply: dict[str, Any] = await client.call(
            "thread.send",
            {"thread_id": thread_id, "client_msg_id": client_msg_id, "text": "how is she?"},
            namespace="/threads",
            timeout=SEND_ANSWERED_WITHIN,
        )
    except socketio.exceptions.TimeoutError:
        return {"ok": False, "error": {"code": "no_ack"}}
    except socketio.exceptions.BadNamespaceError:
        return {"ok": False, "error": {"code": "disconnected"}}
    return reply


async def new_thread(cluster: Cluster, sub: str) -> str:
    """A new thread of family `sub`; its id."""
    created = await cluster.rest(
        "POST", "/api/threads", {"patient_ref": "pat-1"}, token=cluster.token(Role.PARENT, sub)
    )
    thread_id: str = created["thread"]["thread_id"]
    return thread_id


async def assert_stored_once(
    cluster: Cluster, threads: dict[str, str], acked: dict[tuple[str, str], int]
) -> dict[str, Counter[str]]:
    """Each thread (family sub -> thread id) read back through node C: gap-free seqs, every
    message stored once, every acknowledged one (thread, client_msg_id -> seq) with its acked
    seq. The client_msg_ids stored, by thread id."""
    stored_by_thread: dict[str, Counter[str]] = {}
    for sub, thread_id in threads.items():
        page = await cluster.rest(
            "GET",
            f"/api/threads/{thread_id}/messages?after_seq=0&limit=500",
            on=2,
            token=cluster.token(Role.PARENT, sub),
        )
        assert page["has_more"] is False
        seqs = [m["seq"] for m in page["messages"]]
        assert seqs == list(range(1, len(seqs) + 1)), "seqs have a gap"
        stored = Counter(m["client_msg_id"] for m in page["messages"])
        assert max(stored.values()) == 1, "a message is stored twice"
        by_id = {m["client_msg_id"]: m["seq"] for m in page["messages"]}
        for (acked_thread, client_msg_id), seq in acked.items():
            if acked_thread == thread_id:
                assert by_id.get(client_msg_id) == seq, client_msg_id
        stored_by_thread[thread_id] = stored
    return stored_by_thread
