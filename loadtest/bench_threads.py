"""The message-visit benchmark over the wire (`careline bench chat`): durable acks and fan-out.

Against any Careline deployment: `senders` parents each open `threads / senders` threads, one
clinician per family picks them up. Each family has a sending device and a second device, and
its clinician one device: every message a sender writes is pushed to the two other devices.
Senders write into their threads in turn, with at most `window` unacknowledged messages each: the
next message leaves when an ack comes back. Reported: acknowledged (durable) messages per second,
ack latency and push latency to the other devices, all on this process's monotonic clock.

Only the documented wire is used (HTTP + socket.io /threads, msgpack), through the lean
`ChatSocket` client so that the load generator costs far less CPU than the server it measures
on the same machine; tokens come from the caller, so the target can be any deployment whose
tokens the caller can mint.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from careline.loadtest.chat_socket import ChatSocket
from careline.loadtest.errors import LoadtestError
from careline.loadtest.percentiles import percentile
from careline.loadtest.proc_stats import CpuSample, cpu_percent, host_cpu_percent, sample_cpu

log = logging.getLogger(__name__)

NAMESPACE = "/threads"
#: (role, sub) -> a bearer token for the target deployment.
TokenSource = Callable[[str, str], str]
#: How long, after the timed phase, the acks of messages still in flight are awaited.
DRAIN_SECONDS = 30.0
#: How long, after the last ack, late pushes are awaited.
LATE_PUSH_SECONDS = 0.5


class BenchError(LoadtestError):
    """The target refused the benchmark's setup or its traffic."""

    code = "loadtest.bench"


@dataclass(frozen=True, slots=True)
class ChatBenchConfig:
    """What `careline bench chat` runs."""

    senders: int = 50
    threads: int = 500
    seconds: float = 10.0
    warmup_seconds: float = 2.0
    window: int = 1
    text_bytes: int = 200


@dataclass(frozen=True, slots=True)
class ChatBenchResult:
    """The JSON `careline bench chat --json` prints (plus the backend the caller adds).

    `acked` counts acks received during the timed phase; the latencies cover every message sent
    during it (their acks are awaited after it). `missing_deliveries`: pushes that never
    arrived, of the acknowledged messages sent during the timed phase (two each). CPU figures
    are % of one core over the timed phase (`server_cpu_pct` only when the caller names the
    server's process).
    """

    senders: int
    threads: int
    seconds: float
    acked: int
    acked_per_s: float
    ack_ms_p50: float
    ack_ms_p99: float
    fanout_ms_p50: float
    fanout_ms_p99: float
    deliveries: int
    missing_deliveries: int
    errors: dict[str, int]
    loadgen_cpu_pct: float
    server_cpu_pct: float | None
    host_cpu_pct: float
    cpu_count: int


class _ErrorInfo(msgspec.Struct):
    code: str = "unknown"


class _Ack(msgspec.Struct):
    """The part of an ack the benchmark reads (msgspec skips the rest without building it)."""

    ok: bool = False
    error: _ErrorInfo | None = None


class _PushedMessage(msgspec.Struct):
    client_msg_id: str


class _Push(msgspec.Struct):
    """The part of a `thread.message` push the benchmark reads."""

    message: _PushedMessage


@dataclass(slots=True)
class _Stats:
    """Samples of the timed phase, filled by the sockets' callbacks."""

    acks: list[float] = field(default_factory=list)
    acked_in_window: int = 0
    fanout: list[float] = field(default_factory=list)
    #: client_msg_id -> [sent at, pushes not yet seen, 1.0 once acked] for messages sent in the
    #: window (removed once every push arrived, or when the send was refused).
    in_flight: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    measuring: bool = False

    def error(self, code: str, count: int = 1) -> None:
        self.errors[code] = self.errors.get(code, 0) + count


class _Sender:
    """One family's sending device: keeps `window` messages in flight, one thread after another."""

    def __init__(
        self, socket: ChatSocket, index: int, thread_ids: list[str], text: str, stats: _Stats
    ) -> None:
        self._socket = socket
        self._index = index
        self._thread_ids = thread_ids
        self._text = text
        self._stats = stats
        self._n = 0
        self.stopping = False
        self.done = asyncio.Event()

    def start(self, window: int) -> None:
        for _ in range(window):
            self._send()

    def _send(self) -> None:
        if self.stopping:
            if self._socket.pending == 0:
                self.done.set()
            return
        n = self._n
        self._n += 1
        thread_id = self._thread_ids[n % len(self._thread_ids)]
        cmid = f"b{self._index}-{n}"
        measured = self._stats.measuring
        started = time.perf_counter()
        if measured:
            self._stats.in_flight[cmid] = [started, 2.0, 0.0]
        payload = {"thread_id": thread_id, "client_msg_id": cmid, "text": self._text}
        self._socket.call(
            "thread.send",
            payload,
            lambda reply: self._acked(reply, cmid, started, measured),
            ack_type=_Ack | None,
        )

    def _acked(self, reply: _Ack | None, cmid: str, started: float, measured: bool) -> None:
        now = time.perf_counter()
        stats = self._stats
        if reply is not None and reply.ok:
            if stats.measuring:
                stats.acked_in_window += 1
            if measured:
                stats.acks.append(now - started)
                entry = stats.in_flight.get(cmid)
                if entry is not None:
                    if entry[1] <= 0:
                        del stats.in_flight[cmid]
                    else:
                        entry[2] = 1.0
        else:
            error = None if reply is None else reply.error
            stats.error("bad_ack" if error is None else error.code)
            if measured:
                stats.in_flight.pop(cmid, None)
        self._send()

    def lost(self, unanswered: int) -> None:
        if unanswered:
            self._stats.error("connection_lost", unanswered)
        self.stopping = True
        self.done.set()


async def run_chat_bench(
    url: str, tokens: TokenSource, config: ChatBenchConfig, server_pid: int | None = None
) -> ChatBenchResult:
    """Set up threads on `url`, run the timed phase and return the measurements."""
    if config.threads < config.senders or config.senders < 1 or config.window < 1:
        raise BenchError("need at least one sender, one thread per sender and a window >= 1")
    stats = _Stats()
    sockets: list[ChatSocket] = []
    # Every socket holds its connection for the whole run: no pool limit.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        try:
            plan = await _set_up(http, url, tokens, config)
            senders: list[_Sender] = []
            text = "x" * config.text_bytes
            for index, (family, thread_ids) in enumerate(plan.items()):
                for role, sub in (("parent", family), ("clinician", _clinician_of(family))):
                    listener = await _connect(http, url, tokens(role, sub), sockets)
                    listener.on("thread.message", _listen(stats), payload_type=_Push)
                sock = await _connect(http, url, tokens("parent", family), sockets)
                sender = _Sender(sock, index, thread_ids, text, stats)
                sock.on_lost = sender.lost
                senders.append(sender)
            for sender in senders:
                sender.start(config.window)
            await asyncio.sleep(config.warmup_seconds)
            pids = [os.getpid()] + ([server_pid] if server_pid is not None else [])
            before = await asyncio.to_thread(sample_cpu, pids)
            stats.measuring = True
            await asyncio.sleep(config.seconds)
            stats.measuring = False
            after = await asyncio.to_thread(sample_cpu, pids)
            for sender in senders:
                sender.stopping = True
            try:
                async with asyncio.timeout(DRAIN_SECONDS):
                    await asyncio.gather(*(sender.done.wait() for sender in senders))
            except TimeoutError:
                stats.error("timeout", sum(s.pending for s in sockets))
            await asyncio.sleep(LATE_PUSH_SECONDS)
        finally:
            for sock in sockets:
                await sock.close()
    return _result(config, stats, before, after, server_pid)


def _result(
    config: ChatBenchConfig,
    stats: _Stats,
    before: CpuSample,
    after: CpuSample,
    server_pid: int | None,
) -> ChatBenchResult:
    elapsed = after.taken_at - before.taken_at
    missing = sum(int(entry[1]) for entry in stats.in_flight.values() if entry[2])
    return ChatBenchResult(
        senders=config.senders,
        threads=config.threads,
        seconds=round(elapsed, 3),
        acked=stats.acked_in_window,
        acked_per_s=round(stats.acked_in_window / elapsed, 1),
        ack_ms_p50=_ms(stats.acks, 0.50),
        ack_ms_p99=_ms(stats.acks, 0.99),
        fanout_ms_p50=_ms(stats.fanout, 0.50),
        fanout_ms_p99=_ms(stats.fanout, 0.99),
        deliveries=len(stats.fanout),
        missing_deliveries=missing,
        errors=stats.errors,
        loadgen_cpu_pct=round(cpu_percent(before, after, os.getpid()), 1),
        server_cpu_pct=(
            None if server_pid is None else round(cpu_percent(before, after, server_pid), 1)
        ),
        host_cpu_pct=round(host_cpu_percent(before, after), 1),
        cpu_count=os.cpu_count() or 1,
    )


def _ms(values: list[float], fraction: float) -> float:
    return round(percentile(values, fraction) * 1000, 2) if values else 0.0


def _clinician_of(family: str) -> str:
    return f"bench-doc-{family.rsplit('-', 1)[-1]}"


async def _set_up(
    http: aiohttp.ClientSession, url: str, tokens: TokenSource, config: ChatBenchConfig
) -> dict[str, list[str]]:
    """Families, their threads, and each thread picked up by the family's clinician."""
    run = f"{time.time_ns():x}"
    plan: dict[str, list[str]] = {f"bench-fam-{i}": [] for i in range(config.senders)}
    families = list(plan)
    for n in range(config.threads):
        family = families[n % len(families)]
        body = await _post(
            http,
            f"{url}/api/threads",
            tokens("parent", family),
            {"patient_ref": f"bench-pat-{n}", "client_thread_id": f"bench-{run}-{n}"},
        )
        thread_id = str(body["thread"]["thread_id"])
        await _post(
            http,
            f"{url}/api/threads/{thread_id}/assign",
            tokens("clinician", _clinician_of(family)),
            {},
        )
        plan[family].append(thread_id)
    return plan


async def _post(
    http: aiohttp.ClientSession, url: str, token: str, body: dict[str, Any]
) -> dict[str, Any]:
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as reply:
        data: dict[str, Any] = await reply.json()
        if reply.status >= 300:
            raise BenchError(f"setup call {url} failed: {reply.status} {data}")
        return data


async def _connect(
    http: aiohttp.ClientSession, url: str, token: str, sockets: list[ChatSocket]
) -> ChatSocket:
    sock = ChatSocket(NAMESPACE)
    await sock.connect(http, url, {"token": token})
    sockets.append(sock)
    return sock


def _listen(stats: _Stats) -> Callable[[_Push], None]:
    def on_message(push: _Push) -> None:
        now = time.perf_counter()
        entry = stats.in_flight.get(push.message.client_msg_id)
        if entry is None:
            return
        stats.fanout.append(now - entry[0])
        entry[1] -= 1.0
        if entry[1] <= 0 and entry[2]:
            del stats.in_flight[push.message.client_msg_id]

    return on_message
