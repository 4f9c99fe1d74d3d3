"""Fixtures for message visits: a real server (SQLite or Redis), socket.io and HTTP clients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from careline.signaling.identity import Role
from tests.support import RedisServer, RunningServer, make_settings, running_server

NS = "/threads"
PUSHES = ("thread.message", "thread.updated", "thread.typing", "thread.read")


class ThreadSocket:
    """A python-socketio client on /threads that records every push it gets."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
        self.pushes: dict[str, list[dict[str, Any]]] = {name: [] for name in PUSHES}
        self._arrived = asyncio.Event()
        for name in PUSHES:
            self.client.on(name, self._recorder(name), namespace=NS)

    def _recorder(self, name: str) -> Callable[[dict[str, Any]], None]:
        def record(data: dict[str, Any]) -> None:
            self.pushes[name].append(data)
            self._arrived.set()

        return record

    async def connect(self, url: str, token: str) -> None:
        await self.client.connect(
            url, auth={"token": token}, namespaces=[NS], transports=["websocket"]
        )

    async def call(self, event: str, payload: Any = None) -> dict[str, Any]:
        reply: dict[str, Any] = await self.client.call(event, payload, namespace=NS, timeout=10)
        return reply

    async def ok(self, event: str, payload: Any = None) -> Any:
        reply = await self.call(event, payload)
        assert reply["ok"] is True, reply
        return reply["data"]

    async def error(self, event: str, payload: Any = None) -> str:
        reply = await self.call(event, payload)
        assert reply["ok"] is False, reply
        code: str = reply["error"]["code"]
        return code

    def messages(self, thread_id: str | None = None) -> list[dict[str, Any]]:
        """Messages pushed so far (optionally of one thread)."""
        return [
            p["message"]
            for p in self.pushes["thread.message"]
            if thread_id is None or p["thread_id"] == thread_id
        ]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        await self.client.disconnect()


class Api:
    """HTTP calls with a bearer token."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self._http = http
        self._base = base
        self.token = token

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def request(
        self, method: str, path: str, json: Any = None, data: bytes | None = None
    ) -> tuple[int, Any]:
        async with self._http.request(
            method, self._base + path, json=json, data=data, headers=self._headers()
        ) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.read()

    async def raw(self, path: str) -> tuple[int, str, bytes, dict[str, str]]:
        async with self._http.get(self._base + path, headers=self._headers()) as response:
            return (
                response.status,
                response.content_type,
                await response.read(),
                dict(response.headers),
            )


class World:
    """A running server plus helpers to make tokens, sockets and API clients for it."""

    def __init__(self, server: RunningServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self._sockets: list[ThreadSocket] = []

    @property
    def url(self) -> str:
        return self.server.url

    def token(self, role: Role, sub: str, **claims: Any) -> str:
        return self.server.token(role, sub, **claims)

    def api(self, role: Role, sub: str, **claims: Any) -> Api:
        return Api(self.http, self.server.url, self.token(role, sub, **claims))

    async def socket(self, role: Role, sub: str, **claims: Any) -> ThreadSocket:
        sock = ThreadSocket()
        await sock.connect(self.server.url, self.token(role, sub, **claims))
        self._sockets.append(sock)
        return sock

    async def open_thread(self, parent: str = "fam-1", patient: str = "pat-1") -> str:
        status, body = await self.api(Role.PARENT, parent).request(
            "POST", "/api/threads", json={"patient_ref": patient}
        )
        assert status == 201, body
        thread_id: str = body["thread"]["thread_id"]
        return thread_id

    async def close(self) -> None:
        for sock in self._sockets:
            await sock.close()


def thread_settings(tmp_path: Path, backend: str, redis: RedisServer | None, **extra: Any) -> Any:
    values: dict[str, Any] = {
        "threads.send_burst": 1000,
        "threads.send_rate_per_second": 1000.0,
        "threads.typing_burst": 100,
        "threads.typing_rate_per_second": 100.0,
    }
    if backend == "redis":
        assert redis is not None
        values.update(
            {
                "store.backend": "redis",
                "store.redis_url": redis.url,
                "store.redis_prefix": f"it-{uuid.uuid4().hex}",
            }
        )
    values.update(extra)
    return make_settings(tmp_path / "data", **values)


WorldFactory = Callable[..., AbstractAsyncContextManager[World]]


@pytest.fixture
def make_world(tmp_path: Path, redis: RedisServer) -> WorldFactory:
    """Start a world with settings overrides: `async with make_world(backend, **settings)`."""

    @asynccontextmanager
    async def start(backend: str = "sqlite", **extra: Any) -> AsyncIterator[World]:
        settings = thread_settings(tmp_path, backend, redis, **extra)
        async with running_server(settings) as server, aiohttp.ClientSession() as http:
            world = World(server, http)
            try:
                yield world
            finally:
                await world.close()

    return start


@pytest.fixture(params=["sqlite", "redis"])
async def world(request: pytest.FixtureRequest, make_world: WorldFactory) -> AsyncIterator[World]:
    """A server on each backend, with generous rate limits."""
    async with make_world(request.param) as running:
        yield running


@pytest.fixture
async def sqlite_world(make_world: WorldFactory) -> AsyncIterator[World]:
    """A server on SQLite only."""
    async with make_world("sqlite") as running:
        yield running


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" + b"\x00" * 100
