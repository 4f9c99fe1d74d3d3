"""A subscriber worker process of `careline bench sfu`: many video-visit subscribers, one loop.

Started as `python -m careline.loadtest.bench_sfu_worker` by the bench, which spreads its
subscribers over several such processes so that the load generator is not the bottleneck. It
reads bench_sfu_messages from stdin and answers on stdout; logs go to stderr.

Each subscriber is a VisitClient that joins, waits to be admitted (the bench's publisher, a
clinician, admits it), starts media and taps the publisher's video without decoding. Frames are
stamped at completion (frame_completion: when their last packet arrived), not when aiortc's
jitter buffer releases them, and matched to the publisher's departures by content digest.
ICE gathers on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable

import msgspec
import socketio

from careline.loadtest.bench_sfu_messages import (
    LINE_LIMIT,
    FromWorker,
    Joined,
    Receiving,
    ReportRequest,
    Stop,
    SubscriberReport,
    WorkerFailed,
    WorkerPlan,
    WorkerReport,
    decode_to_worker,
    encode,
)
from careline.loadtest.concurrency import gather_or_cancel
from careline.loadtest.errors import BenchFailed, LoadtestError
from careline.loadtest.frame_completion import CompletionCounter, install_completion_clock
from careline.loadtest.frame_matching import count_between, match_frames
from careline.loadtest.ice import LOOPBACK, restrict_host_addresses
from careline.loadtest.visit_client import VisitClient, VisitError

log = logging.getLogger(__name__)

#: Failures a worker reports in one line (anything else is logged with its traceback too).
EXPECTED_FAILURES = (
    BenchFailed,
    LoadtestError,
    VisitError,
    TimeoutError,
    ConnectionError,
    socketio.exceptions.SocketIOError,
)
_CLOSE_TIMEOUT = 15.0


class Subscribers:
    """The worker's VisitClients and what they do, in plan order."""

    def __init__(self, plan: WorkerPlan) -> None:
        self._plan = plan
        self.clients = [
            VisitClient(plan.url, token, frames=CompletionCounter(log_capacity=plan.log_capacity))
            for token in plan.tokens
        ]

    async def join(self) -> list[str]:
        """Connect and join every subscriber; their participant ids."""

        async def join_one(client: VisitClient) -> str:
            await client.connect()
            reply = await client.join(self._plan.visit_id)
            return str(reply["participant_id"])

        return await gather_or_cancel(self.clients, join_one, self._plan.join_concurrency)

    async def start_receiving(self) -> None:
        """Once admitted, start media and wait for the warm-up frames of the publisher.

        BenchFailed, saying how many got there, if not all did within the warm-up timeout.
        """
        plan = self._plan

        async def start_one(client: VisitClient) -> None:
            await client.wait_event("visit.admitted", within=plan.warmup_timeout)
            await client.start_media()

        async def warm_one(client: VisitClient) -> None:
            await client.frames_from(
                plan.publisher_id, plan.warmup_frames, within=plan.warmup_timeout
            )

        try:
            async with asyncio.timeout(plan.warmup_timeout):
                await gather_or_cancel(self.clients, start_one, plan.media_concurrency)
                await gather_or_cancel(self.clients, warm_one)
        except TimeoutError:
            raise BenchFailed(
                f"subscribers never got frames: {self.receiving()} of {len(self.clients)} "
                f"received {plan.warmup_frames} frames of the publisher within "
                f"{plan.warmup_timeout:.0f} s"
            ) from None

    def receiving(self) -> int:
        """How many subscribers received at least the warm-up frames of the publisher."""
        count = 0
        for client in self.clients:
            mid = client.mid_of(self._plan.publisher_id)
            if mid is not None and client.frames.count(mid) >= self._plan.warmup_frames:
                count += 1
        return count

    def report(self, request: ReportRequest) -> WorkerReport:
        """Each subscriber's frames of the window, matched to the departures by digest."""
        reports: list[SubscriberReport] = []
        unstamped = 0
        for client in self.clients:
            frames = client.frames
            assert isinstance(frames, CompletionCounter)
            unstamped += frames.unstamped
            mid = client.mid_of(self._plan.publisher_id)
            arrivals = frames.completions(mid) if mid is not None else ()
            delivery = match_frames(request.departures, arrivals, request.tail)
            counted = count_between(
                (moment for _, moment in arrivals), request.window_start, request.window_end
            )
            reports.append(
                SubscriberReport(
                    expected=delivery.expected,
                    matched=delivery.matched,
                    counted=counted,
                    latencies_ms=[round(value * 1000.0, 3) for value in delivery.latencies],
                )
            )
        return WorkerReport(subscribers=reports, unstamped=unstamped)

    async def close(self) -> None:
        """Close every client (each is safe to close twice)."""
        results = await asyncio.gather(
            *(client.close() for client in self.clients), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, ConnectionError):
                log.warning("closing a subscriber failed: %r", result)


async def run_worker(reader: asyncio.StreamReader, send: Callable[[FromWorker], None]) -> int:
    """Serve one bench: read the plan, run the subscribers, answer until told to stop."""
    plan = decode_to_worker(await reader.readline())
    if not isinstance(plan, WorkerPlan):
        raise BenchFailed(f"expected a plan first, got {type(plan).__name__}")
    restrict_host_addresses(LOOPBACK)
    install_completion_clock()
    subscribers = Subscribers(plan)
    try:
        send(Joined(participant_ids=await subscribers.join()))
        await subscribers.start_receiving()
        send(Receiving(subscribers=len(subscribers.clients)))
        while line := await reader.readline():
            message = decode_to_worker(line)
            if isinstance(message, Stop):
                break
            if isinstance(message, ReportRequest):
                send(subscribers.report(message))
        return 0
    except EXPECTED_FAILURES as exc:
        send(WorkerFailed(reason=_one_line(exc)))
        return 1
    finally:
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await subscribers.close()
        except TimeoutError:
            log.warning("subscribers did not close within %.0f s", _CLOSE_TIMEOUT)


async def _main_async() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)

    def send(message: FromWorker) -> None:
        transport.write(encode(message))

    try:
        return await run_worker(reader, send)
    except (msgspec.DecodeError, msgspec.ValidationError, BenchFailed) as exc:
        send(WorkerFailed(reason=f"bad message from the bench: {_one_line(exc)}"))
        return 2
    except Exception as exc:
        log.exception("subscriber worker failed")
        send(WorkerFailed(reason=_one_line(exc)))
        return 1
    finally:
        transport.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, LoadtestError):
        return text  # our own errors are written to be read as they are
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main() -> int:
    """Entry point of `python -m careline.loadtest.bench_sfu_worker`."""
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(_main_async())
    return uvloop.run(_main_async())


if __name__ == "__main__":
    sys.exit(main())
