"""The hotline benchmark (`careline bench hotline`): dispatch latency under a steady call rate.

A throwaway `careline serve` on 127.0.0.1 (SQLite, fsync on every write) serves `kiosks`
registered kiosks and `pharmacists` simulated pharmacist consoles, all driven from this process
over the wire (HTTP + socket.io /hotline, msgpack). Calls are placed at a steady `rate` per
second by idle kiosks in turn; a pharmacist accepts every offer at once, talks for `talk_seconds`,
hangs up and is ready again. Measured after `warmup_seconds`, for `seconds`:

- dispatch latency: from a kiosk emitting `hotline.call` to its pharmacist receiving
  `hotline.offer`, on this process's clock (p50, p99);
- double dispatches: offers of a call that was already offered (must be 0);
- server CPU in % of one core (from /proc, by pid).

Only the documented wire is used: an admin token and order tokens come from `careline token
issue` against the server's config, pharmacists' tokens from `POST /api/tokens`, kiosks are
registered with `POST /api/kiosks` and get their tokens from `POST /api/kiosks/{id}/token`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from careline.loadtest.errors import BenchFailed
from careline.loadtest.hotline_client import HotlineClient, HotlineError
from careline.loadtest.local_server import DEFAULT_COMMAND, LocalServer
from careline.loadtest.percentiles import percentile
from careline.loadtest.proc_stats import cpu_percent, sample_cpu

log = logging.getLogger(__name__)

#: Order tokens minted once and reused (an order token may be shown for several calls).
_ORDER_TOKENS = 2


@dataclass(frozen=True, slots=True)
class HotlineBenchConfig:
    """What `careline bench hotline` runs."""

    kiosks: int = 500
    pharmacists: int = 50
    rate: float = 50.0
    seconds: float = 20.0
    warmup_seconds: float = 3.0
    talk_seconds: float = 0.2

    def __post_init__(self) -> None:
        if self.kiosks < 1 or self.pharmacists < 1:
            raise ValueError("kiosks and pharmacists must be at least 1")
        if self.rate <= 0 or self.seconds <= 0 or self.warmup_seconds < 0:
            raise ValueError("rate and seconds must be > 0, warmup >= 0")
        if self.talk_seconds < 0:
            raise ValueError("talk seconds must be >= 0")


@dataclass(frozen=True, slots=True)
class HotlineBenchResult:
    """The JSON `careline bench hotline --json` prints."""

    kiosks: int
    pharmacists: int
    rate: float
    seconds: float
    calls: int
    placed: int
    dispatch_ms_p50: float
    dispatch_ms_p99: float
    dispatch_ms_max: float
    double_dispatches: int
    unanswered: int
    errors: dict[str, int]
    server_cpu_pct: float
    client_cpu_pct: float

    def to_json(self) -> dict[str, Any]:
        """A plain dict for json.dumps."""
        return dataclasses.asdict(self)


@dataclass(slots=True)
class _Run:
    """Shared state of one run (all on this process's event loop)."""

    idle: asyncio.Queue[_Kiosk]  # kiosks free to call (bounded: one slot per kiosk)
    measuring: bool = False
    placed_at: dict[str, float] = field(default_factory=dict)  # kiosk id -> emit time
    dispatch: list[float] = field(default_factory=list)
    offers: Counter[str] = field(default_factory=Counter)
    placed: int = 0
    answered: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


@dataclass(slots=True)
class _Kiosk:
    kiosk_id: str
    client: HotlineClient
    done: asyncio.Event = field(default_factory=asyncio.Event)


async def run_hotline_bench(
    config: HotlineBenchConfig, command: Sequence[str] = DEFAULT_COMMAND
) -> HotlineBenchResult:
    """Start a server, run the benchmark against it, stop it; BenchFailed if it cannot."""
    directory = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="careline-bench-hotline-"))
    server = LocalServer(
        directory,
        {
            "server": {"log_level": "warning"},
            "hotline": {"wrap_up_seconds": 0.0, "max_queue": max(1000, config.kiosks)},
        },
        command=command,
    )
    try:
        await server.start()
        return await _bench(server, config)
    finally:
        await server.stop()
        await asyncio.to_thread(shutil.rmtree, directory, True)


async def _bench(server: LocalServer, config: HotlineBenchConfig) -> HotlineBenchResult:
    admin = await server.token("admin", "bench-admin")
    orders = [await server.token("order", f"bench-order-{i}") for i in range(_ORDER_TOKENS)]
    run = _Run(idle=asyncio.Queue(maxsize=config.kiosks))
    kiosks: list[_Kiosk] = []
    pharmacists: list[HotlineClient] = []
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as http:
            tokens = await asyncio.gather(
                *(_pharmacist_token(http, server.url, i) for i in range(config.pharmacists))
            )
            for token in tokens:
                pharmacists.append(_pharmacist(server.url, token, run, config))
            kiosk_tokens = await _gather_limited(
                [_kiosk_token(http, server.url, f"bench-k-{i}") for i in range(config.kiosks)], 50
            )
        await _gather_limited([p.connect() for p in pharmacists], 50)
        await asyncio.gather(*(p.available() for p in pharmacists))
        for index, token in enumerate(kiosk_tokens):
            kiosk = _Kiosk(f"bench-k-{index}", HotlineClient(server.url, token))
            kiosk.client.on_push = _kiosk_listener(kiosk)
            kiosks.append(kiosk)
        await _gather_limited([k.client.connect() for k in kiosks], 50)
        for kiosk in kiosks:
            run.idle.put_nowait(kiosk)
        log.info(
            "bench hotline: %d kiosks, %d pharmacists connected; calling at %.0f/s",
            config.kiosks,
            config.pharmacists,
            config.rate,
        )
        return await _measure(server, config, run, orders)
    except HotlineError as exc:
        raise BenchFailed(f"the server refused the benchmark: {exc.code}") from None
    finally:
        for task in list(run.tasks):
            task.cancel()
        await asyncio.gather(*run.tasks, return_exceptions=True)
        await asyncio.gather(
            *(c.close() for c in [*pharmacists, *(k.client for k in kiosks)]),
            return_exceptions=True,
        )


async def _measure(
    server: LocalServer, config: HotlineBenchConfig, run: _Run, orders: list[str]
) -> HotlineBenchResult:
    loop = asyncio.get_running_loop()
    started = loop.time()
    interval = 1.0 / config.rate
    measure_from = started + config.warmup_seconds
    measure_until = measure_from + config.seconds
    before = None
    next_call = started
    count = 0
    while loop.time() < measure_until:
        now = loop.time()
        if before is None and now >= measure_from:
            before = await asyncio.to_thread(sample_cpu, [server.pid, os.getpid()])
            run.measuring = True
        if now < next_call:
            await asyncio.sleep(next_call - now)
            continue
        next_call += interval
        try:
            kiosk = run.idle.get_nowait()
        except asyncio.QueueEmpty:
            run.errors["no_idle_kiosk"] += 1
            continue
        count += 1
        _spawn(run, _place(kiosk, run, orders[count % len(orders)]))
    after = await asyncio.to_thread(sample_cpu, [server.pid, os.getpid()])
    run.measuring = False
    assert before is not None
    measured = list(run.dispatch)
    if not measured:
        raise BenchFailed("no call was dispatched in the measured window")
    return HotlineBenchResult(
        kiosks=config.kiosks,
        pharmacists=config.pharmacists,
        rate=config.rate,
        seconds=config.seconds,
        calls=len(measured),
        placed=run.placed,
        dispatch_ms_p50=round(percentile(measured, 0.5) * 1000, 2),
        dispatch_ms_p99=round(percentile(measured, 0.99) * 1000, 2),
        dispatch_ms_max=round(max(measured) * 1000, 2),
        double_dispatches=sum(n - 1 for n in run.offers.values() if n > 1),
        unanswered=max(0, run.placed - run.answered),
        errors=dict(run.errors),
        server_cpu_pct=round(cpu_percent(before, after, server.pid), 1),
        client_cpu_pct=round(cpu_percent(before, after, os.getpid()), 1),
    )


async def _place(kiosk: _Kiosk, run: _Run, order: str) -> None:
    """One call: place it, wait until the pharmacist hangs up, then the kiosk is idle again."""
    kiosk.done.clear()
    run.placed_at[kiosk.kiosk_id] = time.perf_counter()
    measuring = run.measuring
    try:
        await kiosk.client.place_call(order)
        if measuring:
            run.placed += 1
        async with asyncio.timeout(60):
            await kiosk.done.wait()
    except HotlineError as exc:
        run.errors[exc.code] += 1
    except TimeoutError:
        run.errors["call_not_ended"] += 1
        with contextlib.suppress(HotlineError):
            await kiosk.client.call("hotline.end")
    run.idle.put_nowait(kiosk)


def _kiosk_listener(kiosk: _Kiosk) -> Any:
    def on_push(name: str, data: Any) -> None:
        if name == "hotline.call" and data.get("state") in ("completed", "abandoned"):
            kiosk.done.set()
        kiosk.client.events.clear()  # keep memory flat over long runs

    return on_push


def _pharmacist(url: str, token: str, run: _Run, config: HotlineBenchConfig) -> HotlineClient:
    client = HotlineClient(url, token)

    def on_push(name: str, data: Any) -> None:
        client.events.clear()
        if name != "hotline.offer":
            return
        arrived = time.perf_counter()
        call_id = str(data["call_id"])
        run.offers[call_id] += 1
        placed = run.placed_at.get(str(data["kiosk_id"]))
        if run.measuring and placed is not None and run.offers[call_id] == 1:
            run.dispatch.append(arrived - placed)
        _spawn(run, _answer(client, call_id, run, config))

    client.on_push = on_push
    return client


async def _answer(
    client: HotlineClient, call_id: str, run: _Run, config: HotlineBenchConfig
) -> None:
    """Accept at once, talk, hang up, be ready again."""
    try:
        await client.accept(call_id)
        run.answered += 1
        await asyncio.sleep(config.talk_seconds)
        await client.call("hotline.end")
        await client.available()
    except HotlineError as exc:
        run.errors[exc.code] += 1


async def _pharmacist_token(http: aiohttp.ClientSession, url: str, index: int) -> str:
    body = {"sub": f"bench-ph-{index}", "role": "pharmacist", "ttl_seconds": 3600}
    async with http.post(f"{url}/api/tokens", json=body) as response:
        if response.status != 201:
            raise BenchFailed(f"POST /api/tokens answered {response.status}")
        return str((await response.json())["token"])


async def _kiosk_token(http: aiohttp.ClientSession, url: str, kiosk_id: str) -> str:
    async with http.post(f"{url}/api/kiosks", json={"kiosk_id": kiosk_id}) as response:
        if response.status != 201:
            raise BenchFailed(f"POST /api/kiosks answered {response.status}")
        secret = (await response.json())["secret"]
    async with http.post(f"{url}/api/kiosks/{kiosk_id}/token", json={"secret": secret}) as response:
        if response.status != 201:
            raise BenchFailed(f"POST /api/kiosks/{{id}}/token answered {response.status}")
        return str((await response.json())["token"])


async def _gather_limited(work: list[Any], limit: int) -> list[Any]:
    """Await coroutines with at most `limit` in flight; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(item: Any) -> Any:
        async with gate:
            return await item

    return list(await asyncio.gather(*(one(w) for w in work)))


def _spawn(run: _Run, work: Any) -> None:
    task = asyncio.get_running_loop().create_task(work)
    run.tasks.add(task)
    task.add_done_callback(run.tasks.discard)


def format_table(result: dict[str, Any]) -> str:
    """The result as aligned `key: value` lines."""
    return "".join(f"{key:>20}: {value}\n" for key, value in result.items())
