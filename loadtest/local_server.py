"""A throwaway `careline serve` child process on 127.0.0.1, for benchmarks run on this machine.

The server gets a directory of its own: a TOML config written from the given settings (with a
fresh random auth secret), its data dir, and its log (stderr) in `server.log`. It listens on an
ephemeral port; its URL is read from the "careline listening on" line it prints. CARELINE_*
variables of the environment apply to it as to any `careline serve` (they override the file).
Tokens come from `careline token issue` with the same config, so they are signed with the same
secret. The benchmark talks to the server only over the wire and reads its CPU and memory from
/proc by pid; nothing here imports the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from careline.loadtest.errors import BenchFailed

log = logging.getLogger(__name__)

#: How the `careline` command is run: this interpreter, so the same installation is measured.
DEFAULT_COMMAND: tuple[str, ...] = (sys.executable, "-m", "careline.server")
_LISTENING = re.compile(rb"careline listening on (http://127\.0\.0\.1:\d+)")

SettingValue = str | int | float | bool | Sequence[str]


class LocalServer:
    """`careline serve --host 127.0.0.1 --port 0` with `settings`, in `directory`.

    `settings` maps a section to its keys, e.g. {"media": {"forwarding": "transcode"}}. Use
    `start()`, then `url`, `pid` and `token()`; `stop()` sends SIGTERM and waits (then kills),
    and is safe to call twice.
    """

    def __init__(
        self,
        directory: Path,
        settings: Mapping[str, Mapping[str, SettingValue]],
        *,
        command: Sequence[str] = DEFAULT_COMMAND,
        start_timeout: float = 60.0,
        stop_timeout: float = 20.0,
    ) -> None:
        self._directory = directory
        self._settings = settings
        self._command = tuple(command)
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._url: str | None = None

    @property
    def config_file(self) -> Path:
        """The TOML file the server and `token issue` read."""
        return self._directory / "careline.toml"

    @property
    def data_dir(self) -> Path:
        """The server's data directory."""
        return self._directory / "data"

    @property
    def log_file(self) -> Path:
        """Where the server's stderr goes."""
        return self._directory / "server.log"

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>, once started."""
        if self._url is None:
            raise RuntimeError("the server is not started")
        return self._url

    @property
    def pid(self) -> int:
        """The server's process id, once started."""
        if self._process is None:
            raise RuntimeError("the server is not started")
        return self._process.pid

    async def start(self) -> None:
        """Write the config, start the server and wait until it listens (BenchFailed if not)."""
        if self._process is not None:
            raise RuntimeError("the server was already started")
        self._log = await asyncio.to_thread(self._prepare)
        self._process = await asyncio.create_subprocess_exec(
            *self._command,
            "serve",
            "--config",
            str(self.config_file),
            "--data-dir",
            str(self.data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
        )
        assert self._process.stdout is not None
        try:
            async with asyncio.timeout(self._start_timeout):
                line = await self._process.stdout.readline()
        except TimeoutError:
            line = b""
        match = _LISTENING.search(line)
        if match is None:
            await self.stop()
            reason = await asyncio.to_thread(self._last_log_line)
            raise BenchFailed(f"the server did not start: {reason}")
        self._url = match.group(1).decode()

    async def token(self, role: str, sub: str, ttl: int = 3600) -> str:
        """A token for this server, from `careline token issue` (BenchFailed if refused)."""
        process = await asyncio.create_subprocess_exec(
            *self._command,
            "token",
            "issue",
            "--config",
            str(self.config_file),
            "--data-dir",
            str(self.data_dir),
            "--role",
            role,
            "--sub",
            sub,
            "--ttl",
            str(ttl),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        if process.returncode != 0:
            reason = err.decode(errors="replace").strip().splitlines()
            raise BenchFailed(f"careline token issue failed: {reason[-1] if reason else '?'}")
        return out.decode().strip()

    async def stop(self) -> None:
        """SIGTERM, wait up to `stop_timeout`, then SIGKILL. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(self._stop_timeout):
                    await process.wait()
            except TimeoutError:
                log.warning("the server did not stop within %.0f s: killed", self._stop_timeout)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _prepare(self) -> IO[bytes]:
        self._directory.mkdir(parents=True, exist_ok=True)
        sections = {name: dict(keys) for name, keys in self._settings.items()}
        sections.setdefault("auth", {}).setdefault("secret", secrets.token_urlsafe(48))
        self.config_file.write_text(_toml(sections), encoding="utf-8")
        return self.log_file.open("wb")

    def _last_log_line(self) -> str:
        try:
            lines = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        lines = [line for line in lines if line.strip()]
        return lines[-1] if lines else "no output (see `careline serve`)"


def _toml(sections: Mapping[str, Mapping[str, SettingValue]]) -> str:
    """A TOML document of flat tables with strings, numbers, booleans and string lists."""
    lines: list[str] = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        for key, value in keys.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: SettingValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON escapes are valid TOML escapes
    return "[" + ", ".join(json.dumps(item) for item in value) + "]"
