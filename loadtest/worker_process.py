"""One subscriber worker child process of `careline bench sfu`, seen from the bench.

The worker (bench_sfu_worker) reads bench_sfu_messages on its stdin and answers on its stdout;
its stderr is the bench's, so its logs reach the operator. A worker that exits, answers
`failed` or says something unexpected makes `receive` raise BenchFailed naming the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from typing import TypeVar

import msgspec

from careline.loadtest.bench_sfu_messages import (
    LINE_LIMIT,
    FromWorker,
    Stop,
    ToWorker,
    WorkerFailed,
    decode_from_worker,
    encode,
)
from careline.loadtest.errors import BenchFailed

log = logging.getLogger(__name__)

DEFAULT_COMMAND: tuple[str, ...] = (sys.executable, "-m", "careline.loadtest.bench_sfu_worker")
_M = TypeVar("_M", bound=FromWorker)


class WorkerProcess:
    """A worker child process; `start()`, then `send`/`receive`, then `stop()` (safe twice)."""

    def __init__(
        self, index: int, command: Sequence[str] = DEFAULT_COMMAND, stop_within: float = 20.0
    ) -> None:
        self.index = index
        self._command = tuple(command)
        self._stop_within = stop_within
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        """The worker's process id, once started."""
        if self._process is None:
            raise RuntimeError("the worker is not started")
        return self._process.pid

    async def start(self) -> None:
        """Start the child process (its imports take a second or two)."""
        self._process = await asyncio.create_subprocess_exec(
            *self._command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
        )

    async def send(self, message: ToWorker) -> None:
        """Write one message to the worker's stdin."""
        process = self._require()
        assert process.stdin is not None
        try:
            process.stdin.write(encode(message))
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise BenchFailed(f"worker {self.index} exited (code {process.returncode})") from None

    async def receive(self, kind: type[_M]) -> _M:
        """The worker's next message, which must be a `kind` (bound it with a timeout)."""
        process = self._require()
        assert process.stdout is not None
        line = await process.stdout.readline()
        if not line:
            code = await process.wait()
            raise BenchFailed(f"worker {self.index} exited (code {code}); see its log above")
        try:
            message = decode_from_worker(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BenchFailed(f"worker {self.index} said something unreadable: {exc}") from None
        if isinstance(message, WorkerFailed):
            raise BenchFailed(f"worker {self.index}: {message.reason}")
        if not isinstance(message, kind):
            raise BenchFailed(
                f"worker {self.index}: expected {kind.__name__}, got {type(message).__name__}"
            )
        return message

    async def stop(self) -> None:
        """Ask the worker to close its subscribers and exit; kill it after `stop_within` s."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None and process.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.write(encode(Stop()))
                await process.stdin.drain()
            process.stdin.close()
        try:
            async with asyncio.timeout(self._stop_within):
                await process.wait()
        except TimeoutError:
            log.warning(
                "worker %d did not exit within %.0f s: killed", self.index, self._stop_within
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def _require(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError("the worker is not started")
        return self._process
