"""The parent's side of `--workers N`: N worker processes, their progress and their results.

Each worker is `python -m careline.loadtest.load_worker` (this interpreter), told its share on
stdin; a reader task per worker keeps its latest progress and its final measurements. Stopping
asks every worker to wind down (WorkerStop) and waits for their reports within a deadline,
then kills what is left. `close()` is safe twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import Counter

import msgspec

from careline.loadtest.errors import LoadtestError
from careline.loadtest.load_metrics import MetricsState
from careline.loadtest.worker_messages import (
    LINE_LIMIT,
    WorkerCrashed,
    WorkerDone,
    WorkerProgress,
    WorkerStart,
    WorkerStop,
    decode_from_worker,
    encode_line,
)

log = logging.getLogger(__name__)
COMMAND = (sys.executable, "-m", "careline.loadtest.load_worker")


class WorkerFailed(LoadtestError):
    """A worker could not generate its share."""

    code = "loadtest.worker_failed"


class _Worker:
    def __init__(self, index: int, process: asyncio.subprocess.Process) -> None:
        self.index = index
        self.process = process
        self.progress = WorkerProgress({}, {})
        self.result: MetricsState | None = None
        self.cpu_seconds = 0.0
        self.failure: str | None = None
        self.reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            line = await stdout.readline()
            if not line:
                if self.result is None and self.failure is None:
                    code = await self.process.wait()
                    self.failure = f"worker {self.index} exited (code {code})"
                return
            try:
                message = decode_from_worker(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.failure = f"worker {self.index} said something unreadable: {exc}"
                return
            if isinstance(message, WorkerProgress):
                self.progress = message
            elif isinstance(message, WorkerDone):
                self.result = message.metrics
                self.cpu_seconds = message.cpu_seconds
            else:
                assert isinstance(message, WorkerCrashed)
                self.result = message.metrics
                self.cpu_seconds = message.cpu_seconds
                self.failure = f"worker {self.index}: {message.code}: {message.reason}"


class WorkerPool:
    """`start(plans)`, then `progress()` while running, `wait()` for the results, `close()`."""

    def __init__(self, stop_within: float = 30.0) -> None:
        self._workers: list[_Worker] = []
        self._stop_within = stop_within

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers."""
        return [worker.process.pid for worker in self._workers]

    async def start(self, plans: list[WorkerStart]) -> None:
        """One worker per plan, each told its plan."""
        for index, plan in enumerate(plans):
            process = await asyncio.create_subprocess_exec(
                *COMMAND,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT,
            )
            worker = _Worker(index, process)
            self._workers.append(worker)
            worker.reader = asyncio.get_running_loop().create_task(worker.read())
            assert process.stdin is not None
            process.stdin.write(encode_line(plan))
            await process.stdin.drain()

    def progress(self) -> tuple[Counter[str], Counter[str]]:
        """Counters and errors summed over the workers' latest reports."""
        counters: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        for worker in self._workers:
            state = worker.result
            counters.update(state.counters if state else worker.progress.counters)
            errors.update(state.errors if state else worker.progress.errors)
        return counters, errors

    def cpu_seconds(self) -> list[float]:
        """CPU seconds each worker reported using (0 for one that never reported)."""
        return [worker.cpu_seconds for worker in self._workers]

    def failures(self) -> list[str]:
        """One line per worker that failed."""
        return [worker.failure for worker in self._workers if worker.failure]

    @property
    def finished(self) -> bool:
        """Every worker reported (or ended)."""
        return all(worker.reader is None or worker.reader.done() for worker in self._workers)

    async def stop(self) -> None:
        """Ask every worker to wind down early."""
        for worker in self._workers:
            stdin = worker.process.stdin
            if stdin is not None and not stdin.is_closing():
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    stdin.write(encode_line(WorkerStop()))
                    await stdin.drain()

    async def wait(self) -> list[MetricsState]:
        """The workers' measurements once all reported (bound it with a timeout)."""
        readers = [w.reader for w in self._workers if w.reader is not None]
        await asyncio.gather(*readers, return_exceptions=True)
        return [worker.result for worker in self._workers if worker.result is not None]

    async def close(self) -> None:
        """Stop, wait up to the deadline, kill the rest. Safe twice."""
        await self.stop()
        for worker in self._workers:
            process = worker.process
            if process.stdin is not None and not process.stdin.is_closing():
                process.stdin.close()
            try:
                async with asyncio.timeout(self._stop_within):
                    await process.wait()
            except TimeoutError:
                log.warning("worker %d did not exit: killed", worker.index)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            if worker.reader is not None:
                worker.reader.cancel()
                await asyncio.gather(worker.reader, return_exceptions=True)
