"""Clients whose packets the msgpack server cannot decode are dropped with one log line."""

from __future__ import annotations

import logging

import aiohttp
import pytest
import socketio

from careline.server.app_keys import SIO
from careline.server.socket_server import SocketServer
from careline.signaling.identity import Role
from tests.support import RunningServer, eventually


async def test_undecodable_packets_drop_only_that_client(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    good = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    await good.connect(
        server.url, auth={"token": server.token(Role.PARENT, "p-1")}, transports=["websocket"]
    )
    text = socketio.AsyncClient(reconnection=False)  # the default JSON text parser
    with pytest.raises(socketio.exceptions.ConnectionError):
        await text.connect(
            server.url, auth={"token": server.token(Role.PARENT, "p-2")}, transports=["websocket"]
        )
    await text.disconnect()
    # Raw engine.io over a websocket: open, then a binary frame that is not msgpack.
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{server.url}/socket.io/?EIO=4&transport=websocket") as ws,
    ):
        opened = await ws.receive()
        assert opened.type is aiohttp.WSMsgType.TEXT
        assert opened.data.startswith("0")
        for _ in range(20):
            await ws.send_bytes(b"\xc1\xc1junk")
        closed = await ws.receive(timeout=5)
        # engine.io's "close" packet ("1"), or the websocket closing.
        assert closed.data == "1" or closed.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
        )
    sio = server.app[SIO]
    assert isinstance(sio, SocketServer)
    await eventually(lambda: sio.dropped_undecodable >= 2)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]
    reply = await good.call("session.whoami", timeout=5)
    assert reply["ok"]
    await good.disconnect()
