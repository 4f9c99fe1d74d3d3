"""The load generator's lean socket.io client against a real server: acks and pushes reach their
callbacks in order, in the parser's call when aiohttp allows it and by the reader task when
not; and the inbox under it keeps aiohttp's order and steps aside where it must."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from careline.loadtest.chat_socket import ChatSocket
from careline.loadtest.websocket_inbox import ClientInbox, install_inbox
from careline.signaling.identity import Role
from tests.support import eventually, websocket_route
from tests.threads.conftest import World

MESSAGES = 30


async def _exchange(world: World, *, read_from_parser: bool) -> None:
    """A parent sends MESSAGES messages one after another from each ack; the parent's second
    device and the clinician get every push, in order; every callback runs in the place the
    socket says it reads in."""
    thread_id = await world.open_thread("fam-1")
    status, body = await world.api(Role.CLINICIAN, "doc-1").request(
        "POST", f"/api/threads/{thread_id}/assign", json={}
    )
    assert status == 200, body
    sockets: list[ChatSocket] = []
    async with aiohttp.ClientSession() as http:
        try:
            for role, sub in ((Role.PARENT, "fam-1"), (Role.CLINICIAN, "doc-1")):
                listener = ChatSocket("/threads", read_from_parser=read_from_parser)
                await listener.connect(http, world.url, {"token": world.token(role, sub)})
                sockets.append(listener)
            sender = ChatSocket("/threads", read_from_parser=read_from_parser)
            await sender.connect(http, world.url, {"token": world.token(Role.PARENT, "fam-1")})
            sockets.append(sender)
            assert all(s.reads_from_parser is read_from_parser for s in sockets)

            acks: list[dict[str, Any]] = []
            pushes: list[list[str]] = [[], []]
            tasks: set[asyncio.Task[Any] | None] = set()
            reader_tasks = {s._reader for s in sockets}
            done = asyncio.get_running_loop().create_future()

            def send(n: int) -> None:
                sender.call(
                    "thread.send",
                    {"thread_id": thread_id, "client_msg_id": f"m{n}", "text": f"hello {n}"},
                    lambda reply: acked(n, reply),
                )

            def acked(n: int, reply: dict[str, Any]) -> None:
                tasks.add(asyncio.current_task())
                acks.append(reply)
                if n + 1 < MESSAGES:
                    send(n + 1)
                else:
                    done.set_result(None)

            for index, listener in enumerate(sockets[:2]):

                def pushed(data: dict[str, Any], into: list[str] = pushes[index]) -> None:
                    tasks.add(asyncio.current_task())
                    into.append(data["message"]["client_msg_id"])

                listener.on("thread.message", pushed)
            send(0)
            await asyncio.wait_for(done, timeout=10)
            expected = [f"m{n}" for n in range(MESSAGES)]
            await eventually(lambda: pushes == [expected, expected])
            assert [ack["ok"] for ack in acks] == [True] * MESSAGES
            seqs = [ack["data"]["message"]["seq"] for ack in acks]
            assert seqs == list(range(seqs[0], seqs[0] + MESSAGES))
            assert [ack["data"]["message"]["client_msg_id"] for ack in acks] == expected
            if read_from_parser:
                assert tasks == {None}  # data_received runs outside any task
            else:
                assert None not in tasks
                assert tasks <= reader_tasks
        finally:
            for sock in sockets:
                await sock.close()
    assert all(sock.pending == 0 for sock in sockets)


async def test_acks_and_pushes_are_handled_in_the_parsers_call(sqlite_world: World) -> None:
    await _exchange(sqlite_world, read_from_parser=True)


async def test_without_the_inbox_the_reader_task_handles_them(sqlite_world: World) -> None:
    await _exchange(sqlite_world, read_from_parser=False)


async def test_closing_a_socket_turns_its_inbox_off(sqlite_world: World) -> None:
    async with aiohttp.ClientSession() as http:
        sock = ChatSocket("/threads")
        token = sqlite_world.token(Role.PARENT, "fam-1")
        await sock.connect(http, sqlite_world.url, {"token": token})
        before = sock.reads_from_parser
        await sock.close()
        after = sock.reads_from_parser
        assert (before, after) == (True, False)
        await sock.close()


@contextlib.asynccontextmanager
async def _frames_server(
    compress: bool = False,
) -> AsyncIterator[tuple[str, list[web.WebSocketResponse]]]:
    """A bare aiohttp websocket route that sends b"1", b"2" on "go", and b"3" on "more"."""
    peers: list[web.WebSocketResponse] = []

    async def route(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=compress)
        await ws.prepare(request)
        peers.append(ws)
        async for message in ws:
            if message.data == "go":
                await ws.send_bytes(b"1")
                await ws.send_bytes(b"2")
            elif message.data == "more":
                await ws.send_bytes(b"3")
        return ws

    async with websocket_route(route) as url:
        yield url, peers


async def test_the_inbox_keeps_aiohttps_order_behind_a_declined_message() -> None:
    offered: list[bytes] = []

    def deliver(data: bytes) -> bool:
        offered.append(data)
        return data != b"1"  # declines the first: it and all behind it are queued

    async with _frames_server() as (url, _), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url)
        inbox = install_inbox(ws)
        assert isinstance(inbox, ClientInbox)
        inbox.deliver = deliver
        await ws.send_str("go")
        await eventually(lambda: len(inbox._buffer) == 2)
        assert offered == [b"1"]
        first, second = await ws.receive(timeout=5), await ws.receive(timeout=5)
        assert (first.type, first.data, second.data) == (WSMsgType.BINARY, b"1", b"2")
        await ws.send_str("more")
        await eventually(lambda: offered == [b"1", b"3"])
        assert not inbox._buffer  # taken in the parser's call
        await ws.close()
        assert ws.closed


async def test_the_inbox_is_not_installed_where_aiohttp_must_read() -> None:
    async with _frames_server(compress=True) as (url, _), aiohttp.ClientSession() as http:
        compressed = await http.ws_connect(url, compress=15)
        assert compressed.compress
        assert install_inbox(compressed) is None
        await compressed.close()
        queued = await http.ws_connect(url)
        await queued.send_str("go")
        await eventually(lambda: len(queued._reader._buffer) == 2)
        assert install_inbox(queued) is None  # messages wait in aiohttp's queue
        assert (await queued.receive(timeout=5)).data == b"1"
        await queued.close()
        assert install_inbox(queued) is None  # closed


@pytest.mark.parametrize("installed", [True, False])
async def test_the_socket_ends_when_the_server_closes(installed: bool) -> None:
    async with _frames_server() as (url, peers), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url)
        if installed:
            assert install_inbox(ws) is not None
        await eventually(lambda: len(peers) == 1)
        await peers[0].close()
        message = await ws.receive(timeout=5)
        assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
