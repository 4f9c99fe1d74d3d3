"""Sockets write straight to their websocket: same packets, same order, on every transport."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgspec
import pytest
import socketio

from careline.server.app_keys import SIO
from careline.server.direct_websocket import DirectWebSocket, direct_sockets_supported
from careline.server.socket_server import SocketServer
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


@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]])
async def test_events_take_the_fast_path_on_every_transport(
    server: RunningServer, transports: list[str]
) -> None:
    sio = server.app[SIO]
    assert isinstance(sio, SocketServer)
    client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    await client.connect(
        server.url, auth={"token": server.token(Role.PARENT, "p-1")}, transports=transports
    )
    try:
        before = sio.direct_events
        replies = await asyncio.gather(
            *(client.call("session.ping", {"client_time": float(n)}, timeout=5) for n in range(10))
        )
        assert [r["data"]["client_time"] for r in replies] == [float(n) for n in range(10)]
        unknown = await client.call("no.such.event", timeout=5)
        assert unknown["error"]["code"] == "unknown_event"
        bad = await client.call("session.ping", {"client_time": "noon"}, timeout=5)
        assert bad["error"]["code"] == "invalid_payload"
        assert sio.direct_events == before + 12
    finally:
        await client.disconnect()


async def test_raw_events_outside_the_fast_path_behave_as_before(server: RunningServer) -> None:
    """What the fast path leaves to python-socketio, over the wire a browser uses."""
    sio = server.app[SIO]
    assert isinstance(sio, SocketServer)
    encode = msgspec.msgpack.encode
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{server.url}/socket.io/?EIO=4&transport=websocket") as ws,
    ):
        opened = await ws.receive(timeout=5)
        assert opened.data.startswith("0")

        async def next_packet() -> dict[str, Any]:
            while True:
                message = await ws.receive(timeout=5)
                if message.type is aiohttp.WSMsgType.BINARY:
                    packet: dict[str, Any] = msgspec.msgpack.decode(message.data)
                    return packet
                if message.data == "2":  # engine.io ping
                    await ws.send_str("3")

        token = server.token(Role.PARENT, "p-1")
        await ws.send_bytes(encode({"type": 0, "nsp": "/", "data": {"token": token}}))
        connected = await next_packet()
        assert connected["type"] == 0
        before = sio.direct_events
        # An event to a namespace this socket never joined: dropped, as python-socketio does.
        await ws.send_bytes(
            encode({"type": 2, "nsp": "/threads", "data": ["thread.list"], "id": 1})
        )
        # An event without an ack id: handled, nothing sent back.
        await ws.send_bytes(encode({"type": 2, "nsp": "/", "data": ["session.whoami"]}))
        # An event with an ack id: its ack, in python-socketio's shape.
        await ws.send_bytes(encode({"type": 2, "nsp": "/", "data": ["session.whoami"], "id": 7}))
        ack = await next_packet()
        assert ack["type"] == 3
        assert ack["nsp"] == "/"
        assert ack["id"] == 7
        [reply] = ack["data"]
        assert reply["ok"]
        assert sio.direct_events == before + 2
        # A client ack (nothing awaits it) goes python-socketio's way and changes nothing.
        await ws.send_bytes(encode({"type": 3, "nsp": "/", "data": [], "id": 99}))
        await ws.send_bytes(encode({"type": 2, "nsp": "/", "data": ["session.whoami"], "id": 8}))
        assert (await next_packet())["id"] == 8
        assert sio.direct_events == before + 3


class _Point(msgspec.Struct):
    x: int
    y: int


async def test_an_emit_with_a_callback_takes_python_socketios_path(server: RunningServer) -> None:
    """Structs become plain values there too, and a tuple still means several arguments."""
    sio = server.app[SIO]
    client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    seen: list[Any] = []

    def pair(first: Any, second: Any) -> str:
        seen.append((first, second))
        return "got it"

    client.on("test.pair", pair)
    await client.connect(
        server.url, auth={"token": server.token(Role.PARENT, "p-1")}, transports=["websocket"]
    )
    try:
        [sid] = [s for s in sio.manager.rooms["/"] if s is not None]
        answers: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        await sio.emit("test.pair", (_Point(x=1, y=2), "b"), to=sid, callback=answers.put_nowait)
        assert await asyncio.wait_for(answers.get(), 5) == "got it"
        assert seen == [({"x": 1, "y": 2}, "b")]
    finally:
        await client.disconnect()
