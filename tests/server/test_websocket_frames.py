"""Websocket frames written to the transport and read from the parser without aiohttp's
coroutines and queue: the same bytes, in order, with aiohttp's path wherever it must act."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from careline.server.app_keys import SIO
from careline.server.direct_websocket import DirectWebSocket
from careline.server.websocket_frames import (
    FrameInbox,
    FrameWriter,
    InboxResponse,
    inbox_supported,
)
from careline.signaling.identity import Role
from tests.support import RunningServer, eventually, websocket_route

encode = msgspec.msgpack.encode


def test_aiohttp_still_has_what_the_inbox_uses() -> None:
    # Fails loudly when aiohttp or engine.io change the internals websocket_frames relies on.
    assert inbox_supported()


Handler = Callable[[InboxResponse], Awaitable[None]]


@contextlib.asynccontextmanager
async def _serve(handler: Handler) -> AsyncIterator[str]:
    """A bare aiohttp app whose websocket route is an InboxResponse run by `handler`."""

    async def route(request: web.Request) -> web.StreamResponse:
        ws = InboxResponse()
        await ws.prepare(request)
        await handler(ws)
        return ws

    async with websocket_route(route) as url:
        yield url


async def test_frames_written_directly_are_the_frames_aiohttp_writes() -> None:
    sizes = [0, 1, 125, 126, 65535, 65536, 300_000]
    written: list[bool] = []

    async def send_all(ws: InboxResponse) -> None:
        frames = FrameWriter.of(ws)
        assert frames is not None
        for size in sizes:
            written.append(frames.write(bytes([size % 251]) * size))
        await ws.send_bytes(b"through aiohttp")
        await ws.receive()

    async with (
        _serve(send_all) as url,
        aiohttp.ClientSession() as http,
        http.ws_connect(url) as ws,
    ):
        for size in sizes:
            message = await ws.receive(timeout=5)
            assert message.type is aiohttp.WSMsgType.BINARY
            assert message.data == bytes([size % 251]) * size
        assert (await ws.receive(timeout=5)).data == b"through aiohttp"
    assert written == [True] * len(sizes)


async def test_a_compressed_websocket_writes_through_aiohttp() -> None:
    checked: list[bool] = []

    async def check(ws: InboxResponse) -> None:
        checked.append(FrameWriter.of(ws) is None)
        await ws.send_bytes(b"deflated")
        await ws.receive()

    async with (
        _serve(check) as url,
        aiohttp.ClientSession() as http,
        http.ws_connect(url, compress=15) as ws,
    ):
        assert (await ws.receive(timeout=5)).data == b"deflated"
    assert checked == [True]


async def test_a_paused_transport_sends_the_writer_to_aiohttp() -> None:
    """Flow control: while the client reads nothing, the server's buffer fills, `write`
    declines, and what aiohttp then sends arrives after what went before, all of it."""
    payload = os.urandom(64 * 1024)
    declined = asyncio.Event()
    sent: list[int] = []

    async def flood(ws: InboxResponse) -> None:
        frames = FrameWriter.of(ws)
        assert frames is not None
        n = 0
        while frames.write(n.to_bytes(4, "big") + payload):
            sent.append(n)
            n += 1
            await asyncio.sleep(0)
        declined.set()
        await ws.send_bytes(n.to_bytes(4, "big") + payload)  # waits for the drain
        sent.append(n)
        await ws.send_bytes(b"end")
        await ws.receive()

    async with (
        _serve(flood) as url,
        aiohttp.ClientSession() as http,
        http.ws_connect(url) as ws,
    ):
        connection = ws._response.connection
        assert connection is not None
        transport = connection.transport
        assert transport is not None
        transport.pause_reading()
        await asyncio.wait_for(declined.wait(), 10)
        transport.resume_reading()
        received = []
        while (message := await ws.receive(timeout=5)).data != b"end":
            assert message.data[4:] == payload
            received.append(int.from_bytes(message.data[:4], "big"))
        assert received == sent
        assert len(sent) > 2


async def test_the_inbox_hands_binary_messages_over_and_queues_the_rest() -> None:
    delivered: list[bytes] = []
    read: list[Any] = []

    def deliver(data: bytes) -> bool:
        if data.startswith(b"no"):
            return False
        delivered.append(data)
        return True

    async def read_some(ws: InboxResponse) -> None:
        inbox = ws._reader
        assert isinstance(inbox, FrameInbox)
        inbox.deliver = deliver
        while (message := await ws.receive()).type is not aiohttp.WSMsgType.CLOSE:
            read.append(message.data)
            await ws.send_str("read")

    async with (
        _serve(read_some) as url,
        aiohttp.ClientSession() as http,
        http.ws_connect(url) as ws,
    ):
        await ws.send_bytes(b"one")
        await ws.send_str("text")
        assert (await ws.receive(timeout=5)).data == "read"
        await ws.send_bytes(b"no thanks")
        assert (await ws.receive(timeout=5)).data == "read"
        await ws.send_bytes(b"two")
        await eventually(lambda: len(delivered) == 2)
    assert delivered == [b"one", b"two"]
    assert read == ["text", b"no thanks"]


async def test_a_message_sent_with_the_handshake_is_read_by_aiohttp() -> None:
    """Bytes that arrive with the upgrade request are already in aiohttp's parser: that
    connection keeps aiohttp's queue, and its first message is not lost."""
    kept: list[object] = []

    async def echo(ws: InboxResponse) -> None:
        kept.append(type(ws._reader))
        message = await ws.receive()
        await ws.send_bytes(message.data)

    async with _serve(echo) as url:
        port = int(url.split(":")[2].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        mask = os.urandom(4)
        body = b"early"
        frame = bytes([0x82, 0x80 | len(body)]) + mask
        frame += bytes(b ^ mask[i % 4] for i, b in enumerate(body))
        writer.write(request + frame)  # one write: the frame rides with the handshake
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        echoed = await asyncio.wait_for(reader.readexactly(2 + len(body)), 5)
        assert echoed == bytes([0x82, len(body)]) + body
        writer.close()
        await writer.wait_closed()
    assert kept
    assert kept[0] is not FrameInbox


@pytest.mark.parametrize("compress", [0, 15])
async def test_socketio_events_over_an_inbox_websocket(
    server: RunningServer, compress: int
) -> None:
    """Through the server: events read from the parser, acks written as direct frames (or, on
    a deflate connection, through aiohttp), answered in order."""
    sio = server.app[SIO]
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"{server.url}/socket.io/?EIO=4&transport=websocket", compress=compress
        ) as ws,
    ):
        assert (await ws.receive(timeout=5)).data.startswith("0")
        token = server.token(Role.PARENT, "p-1")
        await ws.send_bytes(encode({"type": 0, "nsp": "/", "data": {"token": token}}))
        assert msgspec.msgpack.decode((await ws.receive(timeout=5)).data)["type"] == 0
        [sock] = sio.eio.sockets.values()
        assert type(sock) is DirectWebSocket
        inbox = sock._direct._sock._reader
        assert isinstance(inbox, FrameInbox)
        assert inbox.deliver is not None
        assert (sock._frames is None) == bool(compress)
        before = sio.direct_events
        for n in range(20):
            event = {"type": 2, "nsp": "/", "data": ["session.ping", {"client_time": float(n)}]}
            await ws.send_bytes(encode({**event, "id": n}))
        acks: list[dict[str, Any]] = []
        while len(acks) < 20:
            message = await ws.receive(timeout=5)
            if message.type is aiohttp.WSMsgType.TEXT:
                await ws.send_str("3")  # an engine.io ping
                continue
            acks.append(msgspec.msgpack.decode(message.data))
        assert [a["id"] for a in acks] == list(range(20))
        assert [a["data"][0]["data"]["client_time"] for a in acks] == [float(n) for n in range(20)]
        assert sio.direct_events == before + 20
    await eventually(lambda: not sio.eio.sockets)
    assert inbox.deliver is None
