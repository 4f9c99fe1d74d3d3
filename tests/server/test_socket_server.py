"""Clients whose packets the msgpack server cannot decode are dropped with one log line."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
import socketio

from careline.server.app_keys import SIO
from careline.server.socket_server import SocketServer, origin_check
from careline.signaling.identity import Role
from tests.support import RunningServer, eventually, make_settings, running_server


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


async def test_pages_of_other_origins_connect_only_when_allowed(tmp_path: Path) -> None:
    """Same-origin pages always connect; another origin only if in `cluster.allowed_origins`
    (a proxy's address, for the visit page following `visit.wrong_node` to another node)."""
    allowed = "http://entry.example:8443"
    settings = make_settings(tmp_path, **{"cluster.allowed_origins": [allowed + "/"]})
    async with running_server(settings) as server, aiohttp.ClientSession() as http:
        polling = f"{server.url}/socket.io/?EIO=4&transport=polling"
        for origin, status in (
            (None, 200),  # same-origin GETs carry no Origin
            (server.url, 200),
            (allowed, 200),
            ("http://other.example", 400),
        ):
            headers = {"Origin": origin} if origin else {}
            async with http.get(polling, headers=headers) as response:
                assert response.status == status, origin
                granted = response.headers.get("Access-Control-Allow-Origin")
                assert granted == (origin if status == 200 else None)


def test_origin_check_follows_forwarded_headers() -> None:
    check = origin_check(["https://a.example"])
    environ = {"wsgi.url_scheme": "http", "HTTP_HOST": "10.0.0.5:8080"}
    assert check("http://10.0.0.5:8080", environ)
    assert check("HTTPS://A.example", environ)
    assert not check("https://b.example", environ)
    assert not check(None, environ)
    forwarded = {**environ, "HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "b.example"}
    assert check("https://b.example", forwarded)
