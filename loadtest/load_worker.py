"""A worker process of `careline loadtest run --workers N`: generates its share, reports back.

Run as `python -m careline.loadtest.load_worker`. It reads a WorkerStart on stdin, generates its
share, writes WorkerProgress lines meanwhile and a WorkerDone at the end. A WorkerStop (the
operator pressed Ctrl-C in the parent) or the end of stdin ends the run early; SIGINT itself is
ignored, since the parent, which got it too, decides. Logs go to stderr (the parent's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path

import msgspec

from careline.loadtest.errors import LoadtestError
from careline.loadtest.generator import generate
from careline.loadtest.load_metrics import LoadMetrics
from careline.loadtest.worker_messages import (
    LINE_LIMIT,
    WorkerCrashed,
    WorkerDone,
    WorkerProgress,
    WorkerStart,
    WorkerStop,
    decode_to_worker,
    encode_line,
)

log = logging.getLogger(__name__)
PROGRESS_EVERY = 0.5


async def _serve() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    start = decode_to_worker(await reader.readline())
    if not isinstance(start, WorkerStart):
        return 2
    metrics = LoadMetrics(start.started_at)
    cpu_at_start = time.process_time()
    stopping = asyncio.Event()

    def write(message: WorkerProgress | WorkerDone | WorkerCrashed) -> None:
        sys.stdout.buffer.write(encode_line(message))
        sys.stdout.buffer.flush()

    async def listen() -> None:
        while True:
            line = await reader.readline()
            if not line or isinstance(decode_to_worker(line), WorkerStop):
                stopping.set()
                return

    async def report() -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            write(WorkerProgress(dict(metrics.counters), dict(metrics.errors)))

    helpers = [loop.create_task(listen()), loop.create_task(report())]
    try:
        await generate(
            start.scenario,
            start.share,
            url=start.url,
            tokens=start.tokens,
            metrics=metrics,
            run_id=start.run_id,
            seed=start.seed,
            stopping=stopping,
            clip_cache=Path(start.clip_cache) if start.clip_cache else None,
            media_addresses=start.media_addresses,
        )
    except LoadtestError as exc:
        write(
            WorkerCrashed(
                exc.code, exc.message, metrics.state(), time.process_time() - cpu_at_start
            )
        )
        return 1
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
    write(WorkerDone(metrics.state(), time.process_time() - cpu_at_start))
    return 0


def main() -> int:
    """Entry point of the worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING, format="worker %(process)d %(levelname)s %(message)s"
    )
    with contextlib.suppress(msgspec.DecodeError):
        return asyncio.run(_serve())
    return 2


if __name__ == "__main__":
    sys.exit(main())
