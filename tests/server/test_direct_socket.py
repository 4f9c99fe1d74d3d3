"""Sockets write straight to their websocket: same packets, same order, on every transport."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import socketio

from careline.server.app_keys import SIO
from careline.server.direct_websocket import DirectWebSocket, direct_sockets_supported
from careline.signaling.identity import Role
from tests.support import RunningServer, eventually


def test_engineio_still_has_what_direct_sockets_use() -> None:
    # Fails loudly when python-engineio changes the internals DirectWebSocket relies on.
    assert direct_sockets_supported()


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]])
async def test_calls_and_pushes_keep_their_order(
    server: RunningServer, transports: list[str]
) -> None:
    client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    await client.connect(
        server.url, auth={"token": server.token(Role.PARENT, "p-1")}, transports=transports
    )
    try:
        sio = server.app[SIO]
        await eventually(lambda: client.transport() == "websocket")
        [sock] = sio.eio.sockets.values()
        assert type(sock) is DirectWebSocket
        replies = await asyncio.gather(
            *(client.call("session.ping", {"client_time": float(n)}, timeout=5) for n in range(50))
        )
        assert [r["data"]["client_time"] for r in replies] == [float(n) for n in range(50)]
        # Pushes (emits to the socket's id) arrive in the order they were sent.
        seen: list[Any] = []
        client.on("test.order", seen.append)
        [sid] = [s for s in sio.manager.rooms["/"] if s is not None]
        for n in range(20):
            await sio.emit("test.order", n, to=sid)
        await eventually(lambda: len(seen) == 20)
        assert seen == list(range(20))
    finally:
        await client.disconnect()


async def test_a_socket_survives_idle_time_past_the_ping_interval(server: RunningServer) -> None:
    sio = server.app[SIO]
    sio.eio.ping_interval = 0.2
    sio.eio.ping_timeout = 0.5
    client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    await client.connect(
        server.url, auth={"token": server.token(Role.PARENT, "p-1")}, transports=["websocket"]
    )
    try:
        # Pings bypass the queue now: the writer must not give up for lack of queued packets.
        await asyncio.sleep(1.5)
        assert client.connected
        reply = await client.call("session.whoami", timeout=5)
        assert reply["ok"]
    finally:
        await client.disconnect()


async def test_a_silent_client_is_dropped(server: RunningServer) -> None:
    sio = server.app[SIO]
    sio.eio.ping_interval = 0.2
    sio.eio.ping_timeout = 0.3
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{server.url}/socket.io/?EIO=4&transport=websocket") as ws,
    ):
        opened = await ws.receive(timeout=5)
        assert opened.type is aiohttp.WSMsgType.TEXT
        assert opened.data.startswith("0")
        # Never answer pings: the server gives up on the connection.
        async with asyncio.timeout(5):
            while True:
                message = await ws.receive()
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
    await eventually(lambda: not sio.eio.sockets)
