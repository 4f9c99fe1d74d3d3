"""SIGKILL a `careline serve` mid-stream: every acknowledged message survives exactly once.

Several clients send while the server process is killed. After a restart on the same data dir,
every acknowledged message is there with its seq, seqs are gap-free, and retrying the messages
whose ack never came stores each of them once.
"""

from __future__ import annotations

import asyncio
import signal
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp
import socketio

from careline.signaling.identity import Role
from tests.support import SECRET, ServeProcess, careline_serve, issue, make_settings

NS = "/threads"


def serve(data: Path) -> AbstractAsyncContextManager[ServeProcess]:
    """`careline serve` on `data`, with send limits out of the way; SIGKILLed at the end."""
    env = {
        "CARELINE_AUTH_SECRET": SECRET,
        "CARELINE_THREADS_SEND_BURST": "100000",
        "CARELINE_THREADS_SEND_RATE_PER_SECOND": "100000",
    }
    return careline_serve(data, env, stop_signal=signal.SIGKILL)


async def _client(url: str, token: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    await client.connect(url, auth={"token": token}, namespaces=[NS], transports=["websocket"])
    return client


async def test_acknowledged_messages_survive_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = make_settings(data)
    token = issue(settings, Role.PARENT, "fam-1")
    acked: dict[str, int] = {}
    unacked: dict[str, str] = {}
    enough = asyncio.Event()

    async with serve(data) as node:
        url = node.url
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url + "/api/threads",
                json={"patient_ref": "pat-1"},
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            assert response.status == 201
            thread_id = (await response.json())["thread"]["thread_id"]
        clients = [await _client(url, token) for _ in range(4)]

        async def stream(index: int) -> None:
            client = clients[index]
            for n in range(10_000):
                cmid, text = f"c{index}-{n}", f"message {n} from {index}"
                unacked[cmid] = text
                try:
                    reply = await client.call(
                        "thread.send",
                        {"thread_id": thread_id, "client_msg_id": cmid, "text": text},
                        namespace=NS,
                        timeout=2,
                    )
                except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
                    return
                assert reply["ok"] is True, reply
                del unacked[cmid]
                acked[cmid] = reply["data"]["message"]["seq"]
                if len(acked) >= 80:
                    enough.set()

        streams = [asyncio.create_task(stream(i)) for i in range(len(clients))]
        await asyncio.wait_for(enough.wait(), timeout=30)
        node.kill()  # SIGKILL while every client has a send in flight
        await node.process.wait()
        await asyncio.gather(*streams)
        for client in clients:
            await client.disconnect()

    assert len(acked) >= 80
    async with serve(data) as node:
        url = node.url
        client = await _client(url, token)
        try:
            for cmid, text in sorted(unacked.items()):
                reply = await client.call(
                    "thread.send",
                    {"thread_id": thread_id, "client_msg_id": cmid, "text": text},
                    namespace=NS,
                    timeout=10,
                )
                assert reply["ok"] is True, reply
            messages = []
            after = 0
            while True:
                reply = await client.call(
                    "thread.sync",
                    {"thread_id": thread_id, "after_seq": after, "limit": 500},
                    namespace=NS,
                    timeout=10,
                )
                page = reply["data"]
                messages += page["messages"]
                if not page["has_more"]:
                    break
                after = page["messages"][-1]["seq"]
        finally:
            await client.disconnect()

    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(1, len(messages) + 1))
    by_cmid = {m["client_msg_id"]: m["seq"] for m in messages}
    assert len(by_cmid) == len(messages)
    assert all(by_cmid[cmid] == seq for cmid, seq in acked.items())
    assert set(unacked) <= set(by_cmid)
    assert len(messages) == 1 + len(acked) + len(unacked)
