"""`careline bench chat`: a throwaway server on this machine driven by the chat load generator.

The server runs as a `careline serve` child process (its own core and GIL) on a temporary data
dir, with the chosen backend and rate limits out of the way (CARELINE_* variables of the
environment still apply to it, as to any `careline serve`); for Redis, a private redis-server with
`appendonly yes` and `appendfsync always` is started too (or `--redis-url` names one), so acks
are durable on both backends. The load generator (careline.loadtest.bench_threads) runs in
this process and speaks only the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from careline.loadtest.bench_threads import ChatBenchConfig, run_chat_bench
from careline.server.errors import StartupError
from careline.server.settings import load_settings
from careline.server.tokens import TokenIssuer
from careline.signaling.identity import Role

_LISTENING = re.compile(r"careline listening on (http://\S+)")


def bench_chat(
    backend: str, config: ChatBenchConfig, redis_url: str | None = None
) -> dict[str, Any]:
    """Run the benchmark once and return its JSON-ready result."""
    with tempfile.TemporaryDirectory(prefix="careline-bench-") as temp:
        root = Path(temp)
        with _redis(backend, redis_url, root) as url:
            config_file = _settings(backend, url, root)
            settings = load_settings(config_file, env={})
            with _server(config_file, root / "data") as (base_url, server_pid):
                issuer = TokenIssuer(
                    settings.auth.secret,
                    issuer=settings.auth.issuer,
                    audience=settings.auth.audience,
                    default_ttl=3600,
                    max_ttl=settings.auth.max_ttl_seconds,
                )

                def tokens(role: str, sub: str) -> str:
                    return issuer.issue(sub=sub, role=Role(role), ttl=3600).token

                result = asyncio.run(run_chat_bench(base_url, tokens, config, server_pid))
    return {
        "backend": backend,
        "durable": "sqlite fsync" if backend == "sqlite" else "redis aof appendfsync=always",
        **dataclasses.asdict(result),
    }


def _settings(backend: str, redis_url: str | None, root: Path) -> Path:
    """A TOML file for the benchmark's server (the CLI adds host, port and data dir)."""
    lines = [
        "[server]",
        'log_level = "warning"',
        "[auth]",
        f'secret = "{secrets.token_urlsafe(48)}"',
        "[store]",
        f'backend = "{backend}"',
        "[threads]",
        "send_rate_per_second = 1000000.0",
        "send_burst = 1000000",
    ]
    if redis_url is not None:
        lines[lines.index("[threads]") : lines.index("[threads]")] = [
            f'redis_url = "{redis_url}"',
            f'redis_prefix = "bench-{secrets.token_hex(4)}"',
        ]
    path = root / "bench.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def _server(config: Path, data_dir: Path) -> Iterator[tuple[str, int]]:
    """`careline serve` as a child process; yields its URL and pid once it listens."""
    command = [sys.executable, "-m", "careline.server", "serve", "--config", str(config)]
    command += ["--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode(errors="replace")
        match = _LISTENING.search(line)
        if match is None:
            raise StartupError("the benchmark's server did not start (try `careline serve`)")
        yield match.group(1), process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _redis(backend: str, redis_url: str | None, root: Path) -> Iterator[str | None]:
    if backend != "redis" or redis_url is not None:
        yield redis_url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise StartupError("bench chat --backend redis needs redis-server (or --redis-url)")
    port = _free_port()
    directory = root / "redis"
    directory.mkdir()
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
        "yes",
        "--appendfsync",
        "always",
        "--logfile",
        str(directory / "redis.log"),
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        _wait_for_port(port, lambda: process.poll() is None)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, alive: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise StartupError("the benchmark's server process exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise StartupError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f} s")


def add_chat_parser(bench_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`careline bench chat` and its flags (sets `run_bench` for the CLI to call)."""
    chat = bench_commands.add_parser(
        "chat", help="durable message acks and fan-out on a throwaway local server"
    )
    chat.add_argument("--backend", choices=["sqlite", "redis"], default="sqlite")
    chat.add_argument("--json", action="store_true", help="print one JSON object")
    chat.add_argument("--senders", type=int, default=50, help="concurrent senders (families)")
    chat.add_argument("--threads", type=int, default=500, help="threads, spread over senders")
    chat.add_argument("--seconds", type=float, default=10.0, help="length of the timed phase")
    chat.add_argument("--warmup", type=float, default=2.0, help="seconds before timing starts")
    chat.add_argument("--window", type=int, default=1, help="unacknowledged sends per sender")
    chat.add_argument("--redis-url", help="use this Redis instead of a private redis-server")
    chat.set_defaults(run_bench=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    """Run `careline bench chat` and print its result."""
    if args.senders < 1 or args.threads < args.senders or args.window < 1 or args.seconds <= 0:
        sys.stderr.write(
            "careline: bench chat needs senders >= 1, threads >= senders, window >= 1, "
            "seconds > 0\n"
        )
        return 2
    config = ChatBenchConfig(
        senders=args.senders,
        threads=args.threads,
        seconds=args.seconds,
        warmup_seconds=args.warmup,
        window=args.window,
    )
    result = bench_chat(args.backend, config, args.redis_url)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        for key, value in result.items():
            sys.stdout.write(f"{key:>20}: {value}\n")
    return 0
