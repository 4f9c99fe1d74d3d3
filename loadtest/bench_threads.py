"""The message-visit benchmark over the wire (`careline bench chat`): durable acks and fan-out.

Against any Careline deployment: `families` parents each open `threads / families` threads, one
clinician per family picks them up. Each family has a sending device and a second device, and
its clinician one device: every message a sender writes is pushed to the two other devices.
Senders write one message at a time (at most `window` unacknowledged) into their threads in
turn. Reported: acknowledged (durable) messages per second, ack latency and push latency to the
other devices, measured on this process's clock.

Only the documented wire is used (HTTP + socket.io /threads, msgpack); tokens come from the
caller, so the target can be any deployment whose tokens the caller can mint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import socketio

from careline.loadtest.errors import LoadtestError

log = logging.getLogger(__name__)

NAMESPACE = "/threads"
#: (role, sub) -> a bearer token for the target deployment.
TokenSource = Callable[[str, str], str]


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


@dataclass(slots=True)
class _Stats:
    acks: list[float] = field(default_factory=list)
    fanout: list[float] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    expected_pushes: int = 0
    measuring: bool = False


@dataclass(frozen=True, slots=True)
class ChatBenchResult:
    """The JSON `careline bench chat --json` prints (plus the backend the caller adds)."""

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


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile (nearest rank) of `values`, 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


async def run_chat_bench(url: str, tokens: TokenSource, config: ChatBenchConfig) -> ChatBenchResult:
    """Set up threads on `url`, run the timed phase and return the measurements."""
    if config.threads < config.senders or config.senders < 1:
        raise BenchError("need at least one sender and one thread per sender")
    stats = _Stats()
    sockets: list[socketio.AsyncClient] = []
    try:
        async with aiohttp.ClientSession() as http:
            plan = await _set_up(http, url, tokens, config)
        for family, thread_ids in plan.items():
            del thread_ids
            for role, sub in (("parent", family), ("clinician", _clinician_of(family))):
                listener = await _connect(url, tokens(role, sub))
                listener.on("thread.message", _listen(stats), namespace=NAMESPACE)
                sockets.append(listener)
        senders = []
        for family in plan:
            sender = await _connect(url, tokens("parent", family))
            sockets.append(sender)
            senders.append(sender)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(_send_loop(sender, plan[family], stats, config, stop, index))
            for index, (family, sender) in enumerate(zip(plan, senders, strict=True))
        ]
        try:
            await asyncio.sleep(config.warmup_seconds)
            stats.measuring = True
            started = time.perf_counter()
            await asyncio.sleep(config.seconds)
            stats.measuring = False
            elapsed = time.perf_counter() - started
            stop.set()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.5)  # late pushes of the last acked messages
    finally:
        for sock in sockets:
            await sock.disconnect()
    return ChatBenchResult(
        senders=config.senders,
        threads=config.threads,
        seconds=round(elapsed, 3),
        acked=len(stats.acks),
        acked_per_s=round(len(stats.acks) / elapsed, 1),
        ack_ms_p50=round(percentile(stats.acks, 0.50) * 1000, 2),
        ack_ms_p99=round(percentile(stats.acks, 0.99) * 1000, 2),
        fanout_ms_p50=round(percentile(stats.fanout, 0.50) * 1000, 2),
        fanout_ms_p99=round(percentile(stats.fanout, 0.99) * 1000, 2),
        deliveries=len(stats.fanout),
        missing_deliveries=max(0, stats.expected_pushes - len(stats.fanout)),
        errors=stats.errors,
    )


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


async def _connect(url: str, token: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    await client.connect(
        url, auth={"token": token}, namespaces=[NAMESPACE], transports=["websocket"]
    )
    return client


def _listen(stats: _Stats) -> Callable[[dict[str, Any]], None]:
    def on_message(data: dict[str, Any]) -> None:
        sent = stats.sent_at.get(str(data["message"]["client_msg_id"]))
        if sent is not None:
            stats.fanout.append(time.perf_counter() - sent)

    return on_message


async def _send_loop(
    sender: socketio.AsyncClient,
    thread_ids: list[str],
    stats: _Stats,
    config: ChatBenchConfig,
    stop: asyncio.Event,
    index: int,
) -> None:
    text = "x" * config.text_bytes
    window = asyncio.Semaphore(config.window)
    pending: set[asyncio.Task[None]] = set()
    n = 0
    while not stop.is_set():
        await window.acquire()
        thread_id = thread_ids[n % len(thread_ids)]
        cmid = f"b{index}-{n}"
        n += 1
        task = asyncio.create_task(_send_one(sender, thread_id, cmid, text, stats))
        pending.add(task)
        task.add_done_callback(pending.discard)
        task.add_done_callback(lambda _: window.release())
    await asyncio.gather(*pending, return_exceptions=True)


async def _send_one(
    sender: socketio.AsyncClient, thread_id: str, cmid: str, text: str, stats: _Stats
) -> None:
    measuring = stats.measuring
    started = time.perf_counter()
    if measuring:
        stats.sent_at[cmid] = started
    try:
        reply = await sender.call(
            "thread.send",
            {"thread_id": thread_id, "client_msg_id": cmid, "text": text},
            namespace=NAMESPACE,
            timeout=30,
        )
    except socketio.exceptions.TimeoutError:
        stats.errors["timeout"] = stats.errors.get("timeout", 0) + 1
        return
    if not reply.get("ok"):
        code = str(reply.get("error", {}).get("code", "unknown"))
        stats.errors[code] = stats.errors.get(code, 0) + 1
        return
    if measuring and stats.measuring:
        stats.acks.append(time.perf_counter() - started)
        stats.expected_pushes += 2
