"""The `careline` command as a real process: serve, shut down on signals, fail in one line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import socketio

from careline.server import __version__
from tests.support import SECRET, eventually

CLI = [sys.executable, "-m", "careline.server"]
LISTENING = re.compile(rb"careline listening on (http://\S+)")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARELINE_")}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env or _env(), capture_output=True, text=True, timeout=60, check=False
    )


@asynccontextmanager
async def serving(
    args: Sequence[str], env: dict[str, str]
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        match = LISTENING.search(line)
        assert match, line
        yield process, match.group(1).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"careline {__version__}"


async def test_serve_answers_and_shuts_down_gracefully_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env(CARELINE_AUTH_SECRET=SECRET)
    args = ["--host", "127.0.0.1", "--port", "0", "--data-dir", str(data)]
    async with serving(args, env) as (process, url):
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as response:
            assert response.status == 200
            assert (await response.json())["status"] == "ok"
        token = (
            await asyncio.to_thread(
                run_cli, "token", "issue", "--role", "clinician", "--sub", "c-1", env=env
            )
        ).stdout.strip()
        client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
        await client.connect(url, auth={"token": token}, transports=["websocket"])
        assert (await client.call("session.whoami", timeout=5))["ok"] is True

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
        await eventually(lambda: not client.connected, within=10)
        await client.disconnect()
    assert (data / "careline.sqlite3").exists()


async def test_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    env = _env(CARELINE_SERVER_DATA_DIR=str(tmp_path), CARELINE_SERVER_PORT="0")
    async with serving([], env) as (process, _url):
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
        assert process.stderr is not None
        assert b"Traceback" not in await process.stderr.read()


def test_generated_secret_is_shared_by_cli_and_kept_private(tmp_path: Path) -> None:
    first = run_cli(
        "token", "issue", "--role", "admin", "--sub", "a-1", "--data-dir", str(tmp_path)
    )
    assert first.returncode == 0, first.stderr
    secret = tmp_path / "auth-secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert len(secret.read_text().strip()) >= 32
    second = run_cli(
        "token", "issue", "--role", "admin", "--sub", "a-1", "--data-dir", str(tmp_path)
    )
    assert second.returncode == 0
    assert secret.read_text().strip() not in first.stdout + first.stderr


def _one_line_failure(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert text in lines[0]


def test_port_in_use_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            "serve", "--port", str(port), "--data-dir", str(tmp_path), "--log-level", "error"
        )
    _one_line_failure(result, 1, f"cannot listen on 127.0.0.1:{port}")


def test_unwritable_data_dir_fails_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli("serve", "--port", "0", "--data-dir", str(blocker / "data"))
    _one_line_failure(result, 1, "is not writable")


def test_bad_config_fails_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "careline.toml"
    config.write_text("[server]\nport = 123456\n")
    result = run_cli("serve", "--config", str(config))
    _one_line_failure(result, 2, "server.port")
    result = run_cli("serve", env=_env(CARELINE_STORE_BACKEND="postgres"))
    _one_line_failure(result, 2, "store.backend")


def test_unreachable_redis_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = _env(
        CARELINE_STORE_BACKEND="redis", CARELINE_STORE_REDIS_URL=f"redis://127.0.0.1:{port}/0"
    )
    result = run_cli(
        "serve", "--port", "0", "--data-dir", str(tmp_path), "--log-level", "error", env=env
    )
    _one_line_failure(result, 1, "storage backend redis unavailable")


def test_bad_keys_fail_at_start_in_one_line(tmp_path: Path) -> None:
    bad_pem = tmp_path / "public.pem"
    bad_pem.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    env = _env(CARELINE_AUTH_PUBLIC_KEY_FILE=str(bad_pem))
    result = run_cli("serve", "--port", "0", "--data-dir", str(tmp_path / "d1"), env=env)
    _one_line_failure(result, 1, "not a PEM public key")
    data = tmp_path / "d2"
    data.mkdir()
    (data / "auth-secret").write_text("")
    result = run_cli("serve", "--port", "0", "--data-dir", str(data))
    _one_line_failure(result, 1, "holds no usable secret")
    result = run_cli("token", "issue", "--role", "admin", "--sub", "a", "--data-dir", str(data))
    _one_line_failure(result, 1, "holds no usable secret")


async def test_shutdown_does_not_wait_forever_for_idle_polling_clients(tmp_path: Path) -> None:
    env = _env(
        CARELINE_AUTH_SECRET=SECRET,
        CARELINE_SERVER_SHUTDOWN_TIMEOUT_SECONDS="2",
        CARELINE_SERVER_DATA_DIR=str(tmp_path),
        CARELINE_SERVER_PORT="0",
    )
    async with serving([], env) as (process, url):
        # An engine.io long-polling handshake, then silence: no request ever picks up the close.
        async with (
            aiohttp.ClientSession() as http,
            http.get(url + "/socket.io/?EIO=4&transport=polling") as response,
        ):
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=15) == 0


def test_token_issue_rejects_bad_ttl_and_scope(tmp_path: Path) -> None:
    result = run_cli(
        "token",
        "issue",
        "--role",
        "parent",
        "--sub",
        "p",
        "--ttl",
        "0",
        "--data-dir",
        str(tmp_path),
    )
    assert result.returncode == 2
    assert "ttl" in result.stderr
    result = run_cli(
        "token",
        "issue",
        "--role",
        "parent",
        "--sub",
        "p",
        "--visit",
        "v",
        "--thread",
        "t",
        "--data-dir",
        str(tmp_path),
    )
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr
    result = run_cli(
        "token", "issue", "--role", "parent", "--sub", "Jane Doe", "--data-dir", str(tmp_path)
    )
    assert result.returncode == 2
    assert "opaque id" in result.stderr
