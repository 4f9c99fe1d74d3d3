"""socket.io on a real server with a real python-socketio client (msgpack serializer)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from careline.server.app_keys import METRICS, SIO
from careline.signaling.identity import Role
from tests.support import (
    SECRET,
    RunningServer,
    eventually,
    issue,
    make_settings,
    running_server,
)


@asynccontextmanager
async def connected(server: RunningServer, token: str) -> AsyncIterator[socketio.AsyncClient]:
    client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    await client.connect(server.url, auth={"token": token}, transports=["websocket"])
    try:
        yield client
    finally:
        await client.disconnect()


async def refusal(server: RunningServer, auth: Any = None, query: str = "") -> dict[str, Any]:
    """Connect expecting a refusal; return the data of the connect_error."""
    client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(server.url + query, auth=auth, transports=["websocket"])
    await client.disconnect()
    assert errors, "no connect_error was delivered"
    data: dict[str, Any] = errors[0]
    return data


def cli_token(server: RunningServer, *args: str) -> str:
    """A token from the real `careline token issue` command with the server's secret."""
    env = {**os.environ, "CARELINE_AUTH_SECRET": SECRET}
    result = subprocess.run(
        [sys.executable, "-m", "careline.server", "token", "issue", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.strip()


async def test_cli_token_is_accepted_and_tampered_refused(server: RunningServer) -> None:
    token = await asyncio.to_thread(
        cli_token, server, "--role", "parent", "--sub", "p-42", "--visit", "v-7", "--ttl", "300"
    )
    async with connected(server, token) as client:
        reply = await client.call("session.whoami", timeout=5)
    assert reply["ok"] is True
    assert reply["data"]["sub"] == "p-42"
    assert reply["data"]["role"] == "parent"
    assert reply["data"]["visit_id"] == "v-7"

    # Tamper: raise the role to admin and keep the original signature.
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    tampered = f"{header}.{forged}.{signature}"
    refused = await refusal(server, auth={"token": tampered})
    assert refused["data"]["code"] == "auth.bad_signature"


async def test_refusals_carry_reason_codes(server: RunningServer) -> None:
    assert (await refusal(server))["data"]["code"] == "auth.missing"
    assert (await refusal(server, auth={"token": "nope"}))["data"]["code"] == "auth.malformed"
    assert (await refusal(server, query="?token=a.b.c"))["data"]["code"] == "auth.malformed"
    foreign = issue(make_settings(Path("unused"), **{"auth.secret": "f" * 40}), Role.ADMIN, "a")
    refused = await refusal(server, auth={"token": foreign})
    assert refused["data"]["code"] == "auth.bad_signature"
    assert refused["message"] == "the access token's signature is wrong"


async def test_token_in_query_string_is_accepted(server: RunningServer) -> None:
    token = server.token(Role.CLINICIAN, "c-1")
    client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    await client.connect(f"{server.url}?token={token}", transports=["websocket"])
    try:
        reply = await client.call("session.whoami", timeout=5)
        assert reply["data"]["role"] == "clinician"
    finally:
        await client.disconnect()


async def test_ping_and_payload_errors(server: RunningServer) -> None:
    async with connected(server, server.token(Role.PARENT, "p-1")) as client:
        reply = await client.call("session.ping", {"client_time": 12.5}, timeout=5)
        assert reply["ok"] is True
        assert reply["data"]["client_time"] == 12.5
        assert reply["data"]["server_time"] > 0

        for bad in [None, {"client_time": "noon"}, {"client_time": 1, "x": 2}, [1, 2], "str"]:
            reply = await client.call("session.ping", bad, timeout=5)
            assert reply["ok"] is False
            assert reply["error"]["code"] == "invalid_payload"

        reply = await client.call("no.such.event", {"a": 1}, timeout=5)
        assert reply == {
            "ok": False,
            "error": {"code": "unknown_event", "message": "unknown event 'no.such.event'"},
        }
        # The connection is still fine after every bad input.
        assert (await client.call("session.whoami", timeout=5))["ok"] is True


async def test_bad_input_from_one_client_does_not_disturb_another(server: RunningServer) -> None:
    async with (
        connected(server, server.token(Role.PARENT, "p-1")) as noisy,
        connected(server, server.token(Role.CLINICIAN, "c-1")) as calm,
    ):
        results = await asyncio.gather(
            *(
                noisy.call("session.ping", {"client_time": "x" * 1000}, timeout=5)
                for _ in range(50)
            ),
            calm.call("session.ping", {"client_time": 1.0}, timeout=5),
        )
        assert all(r["error"]["code"] == "invalid_payload" for r in results[:-1])
        assert results[-1]["ok"] is True


async def test_expired_token_is_told_and_disconnected(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, **{"auth.leeway_seconds": 0.5})
    async with running_server(settings) as server:
        token = server.token(Role.PARENT, "p-1", ttl=1)
        client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
        notices: list[Any] = []
        client.on("session.expired", notices.append)
        await client.connect(server.url, auth={"token": token}, transports=["websocket"])
        try:
            await eventually(lambda: not client.connected, within=5)
            expected = {"code": "auth.expired", "message": "the access token has expired"}
            assert notices == [expected]
        finally:
            await client.disconnect()


async def test_event_after_expiry_gets_an_error(server: RunningServer) -> None:
    async with connected(server, server.token(Role.PARENT, "p-1")) as client:
        namespace = server.app[SIO].namespace_handlers["/"]
        namespace._clock = lambda: 10_000_000_000.0  # jump past the token's expiry
        reply = await client.call("session.whoami", timeout=5)
        assert reply["error"]["code"] == "auth.expired"


async def test_revocation_cuts_off_connected_sockets(server: RunningServer) -> None:
    token = server.token(Role.PARENT, "p-77", visit_id="v-1")
    client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    notices: list[Any] = []
    client.on("session.revoked", notices.append)
    await client.connect(server.url, auth={"token": token}, transports=["websocket"])
    async with connected(server, server.token(Role.PARENT, "p-78", visit_id="v-1")) as other:
        admin = server.token(Role.ADMIN, "admin-1")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                server.url + "/api/tokens/revoke",
                json={"sub": "p-77", "scope": "v-1"},
                headers={"Authorization": f"Bearer {admin}"},
            ) as response,
        ):
            assert response.status == 200
            assert (await response.json())["disconnected"] == 1
        await eventually(lambda: not client.connected)
        assert notices == [{"code": "auth.revoked", "message": "the access token was revoked"}]
        assert other.connected
        assert (await other.call("session.whoami", timeout=5))["ok"] is True
    await client.disconnect()
    assert (await refusal(server, auth={"token": token}))["data"]["code"] == "auth.revoked"


async def test_metrics_count_sockets(server: RunningServer) -> None:
    async with connected(server, server.token(Role.KIOSK, "k-1")):
        await refusal(server, auth={"token": "junk"})
        namespace = server.app[SIO].namespace_handlers["/"]
        assert namespace.connected_count == 1
        rendered = server.app[METRICS].render().decode()
        assert 'careline_socket_connections{namespace="/",role="kiosk"} 1.0' in rendered
        assert 'careline_socket_refused_total{code="auth.malformed",namespace="/"} 1.0' in rendered
    await eventually(lambda: namespace.connected_count == 0)
    rendered = server.app[METRICS].render().decode()
    assert 'careline_socket_connections{namespace="/",role="kiosk"} 0.0' in rendered
