"""docker-compose.yml's pieces, run for real on loopback without Docker.

There is no Docker engine on the development machines, so `docker compose up` cannot run here.
These tests read the compose file and run its own pieces: Redis with the `redis` service's
command line, coturn with the `coturn` service's, two `careline serve` nodes with the shared
Careline environment, and Debian's nginx with the `proxy` service's configuration. Only
addresses, ports and file locations change, and coturn may relay to loopback peers (it refuses
by default; every peer here is on 127.0.0.1).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
import yaml
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
)
from redis.asyncio import Redis

from careline.loadtest.clips import Clip
from careline.loadtest.ice import restrict_host_addresses
from careline.loadtest.visit_client import VisitClient
from careline.signaling.identity import Role
from tests.cluster.conftest import ORDER_SECRET, Cluster, create_visit, until_registered
from tests.support import SECRET, careline_serve, free_port, make_settings, wait_for_port

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(
        not (shutil.which("nginx") and shutil.which("turnserver")),
        reason="needs nginx and coturn (scripts/test installs them)",
    ),
]

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
TURN_SECRET = "turn-secret-" + "t" * 40

#: Values of the compose file's ${VARIABLES} here.
VARIABLES = {
    "HOST_ADDRESS": "127.0.0.1",
    "CARELINE_AUTH_SECRET": SECRET,
    "CARELINE_ORDER_SECRET": ORDER_SECRET,
    "TURN_SECRET": TURN_SECRET,
}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def expand(value: str) -> str:
    """Compose's interpolation: `${NAME}`, `${NAME:?message}` and `$$` (a literal `$`)."""
    value = re.sub(r"\$\{(\w+)(?::?[?-][^}]*)?\}", lambda m: VARIABLES[m.group(1)], value)
    return value.replace("$$", "$")


def with_option(args: list[str], name: str, value: str) -> list[str]:
    """`args` with `--name=value` (or `--name value`) set to `value`."""
    out, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg == name:
            out += [name, value]
            skip = i + 1 < len(args)
        elif arg.startswith(name + "="):
            out.append(f"{name}={value}")
        else:
            out.append(arg)
    return out


@contextmanager
def running(args: list[str], port: int, what: str, log: Path) -> Iterator[None]:
    """A child process that listens on `port` (TCP), terminated at the end."""
    with log.open("ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, what, timeout=15)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def redis_args(spec: Mapping[str, Any], port: int, directory: Path) -> list[str]:
    args = with_option([expand(str(a)) for a in spec["command"]], "--port", str(port))
    return [shutil.which("redis-server") or "redis-server", *args[1:], "--dir", str(directory)]


def coturn_args(spec: Mapping[str, Any], port: int, directory: Path) -> list[str]:
    args = with_option([expand(str(a)) for a in spec["command"]], "--listening-port", str(port))
    return [
        shutil.which("turnserver") or "turnserver",
        *args,
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        "--allow-loopback-peers",
        "--no-tls",
        "--no-dtls",
        f"--userdb={directory / 'turndb'}",
        f"--pidfile={directory / 'turnserver.pid'}",
        f"--log-file={directory / 'turnserver.log'}",
    ]


def node_environment(
    compose_file: Mapping[str, Any], redis_port: int, turn_port: int
) -> dict[str, str]:
    """The compose file's shared Careline environment with this test's ports. Host, port and
    public URL are the test harness's (each node binds 127.0.0.1 on an ephemeral port)."""
    env = {k: expand(str(v)) for k, v in compose_file["x-careline-env"].items()}
    for key in ("CARELINE_SERVER_HOST", "CARELINE_SERVER_PORT", "CARELINE_CLUSTER_PUBLIC_URL"):
        env.pop(key, None)
    env["CARELINE_STORE_REDIS_URL"] = env["CARELINE_STORE_REDIS_URL"].replace(
        ":6379/", f":{redis_port}/"
    )
    env["CARELINE_MEDIA_TURN_URLS"] = env["CARELINE_MEDIA_TURN_URLS"].replace(
        ":3478?", f":{turn_port}?"
    )
    env["CARELINE_MEDIA_HOST_ADDRESSES"] = "127.0.0.1"
    env["CARELINE_SERVER_LOG_LEVEL"] = "warning"
    return env


def nginx_config(content: str, port: int, upstreams: list[str], directory: Path) -> str:
    """nginx.conf around the proxy service's `default.conf`, with this test's addresses."""
    site = expand(content).replace("listen 8080;", f"listen 127.0.0.1:{port};")
    for placeholder, url in zip(("127.0.0.1:8081", "127.0.0.1:8082"), upstreams, strict=True):
        site = site.replace(placeholder, url.removeprefix("http://"))
    (directory / "default.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
    access_log {directory / "access.log"};
{temp}
    include {directory / "default.conf"};
}}
"""


def _parents_connected(metrics: str) -> int:
    """How many parents' /threads sockets a node holds (from its /metrics)."""
    prefix = 'careline_socket_connections{namespace="/threads",role="parent"} '
    values = [
        float(line[len(prefix) :]) for line in metrics.splitlines() if line.startswith(prefix)
    ]
    return int(sum(values))


@dataclass
class Deployment:
    """The compose file's services on loopback: `cluster` (the two nodes) and `proxy_url`."""

    cluster: Cluster
    proxy_url: str
    redis_port: int
    turn_port: int


@asynccontextmanager
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    restrict_host_addresses(["127.0.0.1"])
    spec = compose()
    services = spec["services"]
    assert {"redis", "coturn", "careline-1", "careline-2", "proxy"} <= set(services)
    redis_port, turn_port, proxy_port = free_port(), free_port(), free_port()
    for name in ("redis", "turn", "nginx"):
        (tmp_path / name).mkdir()
    settings = make_settings(tmp_path / "tokens", **{"hotline.order_secret": ORDER_SECRET})
    async with AsyncExitStack() as stack:
        stack.enter_context(
            running(
                redis_args(services["redis"], redis_port, tmp_path / "redis"),
                redis_port,
                "redis-server",
                tmp_path / "redis.log",
            )
        )
        stack.enter_context(
            running(
                coturn_args(services["coturn"], turn_port, tmp_path / "turn"),
                turn_port,
                "turnserver",
                tmp_path / "turn.log",
            )
        )
        env = node_environment(spec, redis_port, turn_port)
        nodes = [
            await stack.enter_async_context(
                careline_serve(tmp_path / name, env, log_file=tmp_path / f"{name}.log")
            )
            for name in ("careline-1", "careline-2")
        ]
        conf = tmp_path / "nginx" / "nginx.conf"
        conf.write_text(
            nginx_config(
                spec["configs"]["nginx"]["content"],
                proxy_port,
                [n.url for n in nodes],
                tmp_path / "nginx",
            )
        )
        nginx = shutil.which("nginx") or "nginx"
        stack.enter_context(
            running(
                [nginx, "-c", str(conf), "-p", str(tmp_path / "nginx"), "-e", "stderr"],
                proxy_port,
                "nginx",
                tmp_path / "nginx.log",
            )
        )
        http = await stack.enter_async_context(aiohttp.ClientSession())
        cluster = Cluster(settings, nodes, http)
        await until_registered(cluster, 2)
        try:
            yield Deployment(cluster, f"http://127.0.0.1:{proxy_port}", redis_port, turn_port)
        finally:
            for client in cluster.visits:
                await client.close()


async def test_socketio_through_the_proxy_long_polling_and_websocket_and_a_dead_node(
    tmp_path: Path,
) -> None:
    async with deployment(tmp_path) as deployed:
        cluster, proxy = deployed.cluster, deployed.proxy_url
        parent = cluster.token(Role.PARENT, "fam-proxy")
        headers = {"Authorization": f"Bearer {parent}"}
        async with cluster.http.post(
            proxy + "/api/threads", json={"patient_ref": "pat-1"}, headers=headers
        ) as response:
            assert response.status == 201, await response.text()
            thread_id = (await response.json())["thread"]["thread_id"]

        async def connect(transports: list[str]) -> Any:
            client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
            await client.connect(
                proxy,
                auth={"token": parent},
                namespaces=["/threads"],
                transports=transports,
                wait_timeout=10,
            )
            assert client.transport() == transports[-1]
            return client

        async def send_over(transports: list[str], client_msg_id: str) -> dict[str, Any]:
            """Connect through the proxy with `transports`, send one message, disconnect."""
            client = await connect(transports)
            try:
                reply: dict[str, Any] = await client.call(
                    "thread.send",
                    {"thread_id": thread_id, "client_msg_id": client_msg_id, "text": "fever"},
                    namespace="/threads",
                    timeout=10,
                )
                return reply
            finally:
                # A polling client's disconnect would wait for its pending long-poll (up to the
                # ping interval); closing the engine.io session without waiting is enough here.
                await client.eio.disconnect(abort=True)

        # Redis runs as the compose file says: an AOF written before every reply.
        redis = Redis.from_url(
            node_environment(compose(), deployed.redis_port, 0)["CARELINE_STORE_REDIS_URL"]
        )
        try:
            assert await redis.config_get("appendonly") == {"appendonly": "yes"}
            assert await redis.config_get("appendfsync") == {"appendfsync": "always"}
        finally:
            await redis.aclose()

        # Long-polling needs every request of a session on the node that opened it (sticky);
        # the websocket needs the Upgrade headers passed on.
        assert (await send_over(["polling"], "m-1"))["ok"]
        assert (await send_over(["websocket"], "m-2"))["ok"]
        assert (await send_over(["polling", "websocket"], "m-3"))["ok"]

        # The node the proxy sends this client to dies: the proxy sends it to the other.
        held = await connect(["websocket"])
        served = [
            node
            for on, node in enumerate(cluster.nodes)
            if _parents_connected(await cluster.text("/metrics", on=on))
        ]
        assert len(served) == 1
        served[0].kill()
        await served[0].process.wait()
        await held.wait()  # its websocket through the proxy was cut
        for _ in range(5):
            async with cluster.http.get(proxy + "/healthz") as response:
                assert response.status == 200
        assert (await send_over(["polling"], "m-4"))["ok"]
        async with cluster.http.get(
            proxy + f"/api/threads/{thread_id}/messages?after_seq=0&limit=50", headers=headers
        ) as response:
            texts = [m["client_msg_id"] for m in (await response.json())["messages"]]
        assert [t for t in texts if t.startswith("m-")] == ["m-1", "m-2", "m-3", "m-4"]


async def test_a_visit_entered_through_the_proxy_with_media_relayed_by_coturn(
    tmp_path: Path, clip: Clip
) -> None:
    async with deployment(tmp_path) as deployed:
        cluster, proxy = deployed.cluster, deployed.proxy_url
        visit_id, tokens, ids = await create_visit(cluster, on=0)
        doctor = VisitClient(proxy, tokens["clinician"], video=clip)
        parent = VisitClient(proxy, tokens["parent"], video=clip)
        cluster.visits += [doctor, parent]
        for client in (doctor, parent):
            await client.connect()
        await doctor.join(visit_id)
        joined = await parent.join(visit_id)
        # The proxy is the entry; if it sent a join to a node that does not hold the visit, the
        # client was sent to the one that does at its own URL (visit.wrong_node).
        assert doctor.url == parent.url

        # The parent may only use relayed candidates, from the TURN server the node names
        # (time-limited credentials from the shared secret).
        turn = [s for s in joined["ice_servers"] if any("turn:" in u for u in s["urls"])]
        assert turn, joined["ice_servers"]
        assert all(f":{deployed.turn_port}?" in u for s in turn for u in s["urls"])
        parent.rtc_configuration = RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=s["urls"], username=s["username"], credential=s["credential"])
                for s in turn
            ],
            iceTransportPolicy=RTCIceTransportPolicy.RELAY,
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,  # as every Careline client (see ice.py)
        )
        await doctor.call("visit.admit", {"participant_id": ids["parent"]})
        await doctor.start_media()
        await parent.start_media()
        at_parent = await parent.frames_from(ids["clinician"], 5, within=20)
        at_doctor = await doctor.frames_from(ids["parent"], 5, within=20)
        assert parent.frames.digests(at_parent) <= clip.digests()
        assert doctor.frames.digests(at_doctor) <= clip.digests()
        assert parent.pc is not None
        assert parent.pc.localDescription is not None
        candidates = [
            line for line in parent.pc.localDescription.sdp.splitlines() if "a=candidate" in line
        ]
        assert candidates
        assert all(" typ relay" in line for line in candidates), candidates
