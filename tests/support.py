"""Test helpers: a real Careline server on an ephemeral loopback port, a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from careline.server.app import create_app
from careline.server.app_keys import CLUSTER
from careline.server.datadir import auth_secret
from careline.server.settings import Settings, load_settings
from careline.server.tokens import TokenIssuer
from careline.signaling.identity import Role

SECRET = "test-secret-" + "x" * 40


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test: loopback, any port, the given data dir, no environment."""
    values: dict[str, Any] = {
        "server.host": "127.0.0.1",
        "server.port": 0,
        "server.data_dir": str(data_dir),
        "auth.secret": SECRET,
    }
    values.update(overrides)
    return load_settings(overrides=values, env={})


def issue(settings: Settings, role: Role, sub: str, **claims: Any) -> str:
    """A token signed with the settings' secret."""
    issuer = TokenIssuer(
        auth_secret(settings),
        issuer=settings.auth.issuer,
        audience=settings.auth.audience,
        default_ttl=settings.auth.default_ttl_seconds,
        max_ttl=settings.auth.max_ttl_seconds,
    )
    return issuer.issue(sub=sub, role=role, **claims).token


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A Careline app served on 127.0.0.1 at `url`."""

    app: web.Application
    settings: Settings
    url: str

    def token(self, role: Role, sub: str, **claims: Any) -> str:
        """A valid token for this server."""
        return issue(self.settings, role, sub, **claims)


@asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[RunningServer]:
    """Serve `create_app(settings)` on an ephemeral loopback port until the block ends."""
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        node = app.get(CLUSTER)
        if node is not None:
            node.advertise(f"http://{host}:{port}")
        yield RunningServer(app=app, settings=settings, url=f"http://{host}:{port}")
    finally:
        await runner.cleanup()


#: `careline serve` prints one such line per address once it listens.
LISTENING = re.compile(rb"careline listening on (http://\S+)")
#: The `careline` command of this interpreter.
CLI = [sys.executable, "-m", "careline.server"]


@dataclass(frozen=True, slots=True)
class ServeProcess:
    """A `careline serve` child process listening on 127.0.0.1 at `url`."""

    process: asyncio.subprocess.Process
    url: str

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye (leases and sockets just stop)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)


@asynccontextmanager
async def careline_serve(
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    start_within: float = 30.0,
    stop_within: float = 15.0,
    stop_signal: signal.Signals = signal.SIGTERM,
    log_file: Path | None = None,
) -> AsyncIterator[ServeProcess]:
    """`careline serve` on an ephemeral loopback port with `data_dir`, until the block ends.

    The child gets this process's environment without any CARELINE_* variable, then `env`
    (add CARELINE_AUTH_SECRET=SECRET to accept `issue`d tokens). At the end it gets
    `stop_signal` (SIGKILL after `stop_within` seconds) unless it already exited. Its log
    (stderr) goes to `log_file` when given, else nowhere.
    """
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CARELINE_")}
    child_env.update(env or {})
    with contextlib.ExitStack() as files:
        stderr: Any = asyncio.subprocess.DEVNULL
        if log_file is not None:
            stderr = files.enter_context(log_file.open("ab"))
        process = await _spawn_serve(data_dir, child_env, stderr)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=start_within)
        match = LISTENING.search(line)
        assert match, line
        yield ServeProcess(process, match.group(1).decode())
    finally:
        if process.returncode is None:
            process.send_signal(stop_signal)
            try:
                await asyncio.wait_for(process.wait(), timeout=stop_within)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _spawn_serve(
    data_dir: Path, env: Mapping[str, str], stderr: Any
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(slots=True)
class RedisServer:
    """A private redis-server on loopback; a test may stop, kill and restart it (same port and
    data dir, so an AOF is read back)."""

    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    args: list[str]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL (also of a paused server): no shutdown, no final fsync."""
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        """Start redis-server again on the same port and data dir (after `kill`)."""
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port, self.process)


@contextmanager
def redis_server(appendonly: bool = False) -> Iterator[RedisServer]:
    """Start a redis-server of our own on an ephemeral loopback port with a temp dir."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    directory = Path(tempfile.mkdtemp(prefix="careline-redis-"))
    port = free_port()
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(directory),
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--appendfsync",
        "always",
        "--logfile",
        str(directory / "redis.log"),
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(port=port, process=process, directory=directory, args=args)
    try:
        wait_for_port(port, process)
        yield server
    finally:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGCONT)
            server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def wait_for_port(
    port: int,
    process: subprocess.Popen[bytes],
    what: str = "redis-server",
    timeout: float = 10.0,
) -> None:
    """Wait until the child `process` (named `what` in errors) accepts TCP on loopback `port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening on {port}")


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


async def eventually(predicate: Any, within: float = 5.0, interval: float = 0.02) -> None:
    """Wait until `predicate()` is true, or fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


@asynccontextmanager
async def websocket_route(
    route: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A bare aiohttp app on an ephemeral loopback port whose one route, GET /ws, is `route`;
    yields the route's URL and cleans the app up after."""
    app = web.Application()
    app.router.add_get("/ws", route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/ws"
    finally:
        await runner.cleanup()
