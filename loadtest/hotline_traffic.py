"""Hotline traffic: kiosks calling at a steady rate, pharmacists answering, talking, hanging up.

Setup over HTTP with an admin token: kiosks are registered (`POST /api/kiosks`) and exchange
their secret for a kiosk token; pharmacists get tokens from the token source. Everyone connects
to /hotline; pharmacists become available. An idle kiosk places a call (with an order token)
every `60 / calls_per_minute` seconds; the pharmacist rung waits `answer_delay_seconds`,
accepts, talks `handle_seconds` (with video both ways when `media` is on) and hangs up.

Measured: dispatch latency (a kiosk's `hotline.call` emit to its pharmacist's `hotline.offer`
push, on this process's clock), calls placed and answered (the answer rate), errors by code.
Kiosks and pharmacists are all in one process so that the dispatch latency is on one clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from careline.loadtest.clips import Clip
from careline.loadtest.errors import LoadtestError
from careline.loadtest.hotline_client import HotlineClient
from careline.loadtest.scenario import HotlineTraffic
from careline.loadtest.traffic_context import TrafficContext

log = logging.getLogger(__name__)

_DRAIN_EXTRA = 10.0
_ENDED = ("completed", "abandoned")


@dataclass
class _Kiosk:
    kiosk_id: str
    client: HotlineClient
    done: asyncio.Event = field(default_factory=asyncio.Event)


class HotlineCalls:
    """Kiosks and pharmacists of the scenario, all in this process."""

    def __init__(self, ctx: TrafficContext, spec: HotlineTraffic, video: Clip | None) -> None:
        self._ctx = ctx
        self._spec = spec
        self._video = video if spec.media else None
        self._kiosks: list[_Kiosk] = []
        self._pharmacists: list[HotlineClient] = []
        self._idle: asyncio.Queue[_Kiosk] = asyncio.Queue(maxsize=max(1, spec.kiosks))
        self._placed_at: dict[str, float] = {}
        self._offered: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Set up, call until the run ends, let calls in progress finish, close everything."""
        try:
            await self._set_up()
            await self._call_loop()
            await self._drain()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            clients = [*self._pharmacists, *(k.client for k in self._kiosks)]
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    async def _set_up(self) -> None:
        ctx, spec = self._ctx, self._spec
        admin = await ctx.tokens.token("admin", "loadtest-admin")
        for index in range(spec.pharmacists):
            token = await ctx.tokens.token("pharmacist", f"lt-{ctx.run_id}-ph{index}")
            client = HotlineClient(ctx.url, token, video=self._video)
            client.on_push = self._pharmacist_listener(client)
            self._pharmacists.append(client)
        for index in range(spec.kiosks):
            kiosk_id = f"lt-{ctx.run_id}-k{index}"
            registered = await ctx.post("/api/kiosks", admin, {"kiosk_id": kiosk_id})
            issued = await ctx.post(
                f"/api/kiosks/{kiosk_id}/token", admin, {"secret": registered["secret"]}
            )
            kiosk = _Kiosk(
                kiosk_id, HotlineClient(ctx.url, str(issued["token"]), video=self._video)
            )
            kiosk.client.on_push = self._kiosk_listener(kiosk)
            self._kiosks.append(kiosk)
        await asyncio.gather(*(p.connect() for p in self._pharmacists))
        await asyncio.gather(*(p.available() for p in self._pharmacists))
        await asyncio.gather(*(k.client.connect() for k in self._kiosks))
        for kiosk in self._kiosks:
            self._idle.put_nowait(kiosk)

    async def _call_loop(self) -> None:
        ctx = self._ctx
        interval = 60.0 / self._spec.calls_per_minute
        next_at = time.monotonic()
        while await ctx.sleep_until(next_at) and time.monotonic() < ctx.ends_at:
            next_at += interval
            try:
                kiosk = self._idle.get_nowait()
            except asyncio.QueueEmpty:
                ctx.metrics.error("loadtest.no_idle_kiosk")
                continue
            self._spawn(self._place(kiosk, f"lt-{ctx.run_id}-o{int(next_at * 1000)}"))

    async def _drain(self) -> None:
        """Wait for calls in progress (placed before the end) to end, within a bound."""
        within = self._spec.handle_seconds + self._spec.answer_delay_seconds + _DRAIN_EXTRA
        deadline = time.monotonic() + within
        while self._tasks and not self._ctx.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.wait(set(self._tasks), timeout=min(left, 0.5))

    async def _place(self, kiosk: _Kiosk, order_id: str) -> None:
        ctx = self._ctx
        kiosk.done.clear()
        self._placed_at[kiosk.kiosk_id] = time.monotonic()
        try:
            await kiosk.client.place_call(ctx.tokens.order_token(order_id))
            ctx.metrics.count("calls_placed")
            within = self._spec.handle_seconds + self._spec.answer_delay_seconds + 60
            async with asyncio.timeout(within):
                await kiosk.done.wait()
        except LoadtestError as exc:
            ctx.metrics.error(exc.code)
        except TimeoutError:
            ctx.metrics.error("loadtest.call_not_ended")
            with contextlib.suppress(LoadtestError):
                await kiosk.client.call("hotline.end")
        self._idle.put_nowait(kiosk)

    def _kiosk_listener(self, kiosk: _Kiosk) -> Callable[[str, Any], None]:
        def on_push(name: str, data: Any) -> None:
            kiosk.client.events.clear()  # keep memory flat over long runs
            if name != "hotline.call" or not isinstance(data, dict):
                return
            if data.get("state") in _ENDED:
                kiosk.done.set()
            elif data.get("state") == "connected" and self._video is not None:
                self._spawn(self._media(kiosk.client))

        return on_push

    def _pharmacist_listener(self, client: HotlineClient) -> Callable[[str, Any], None]:
        def on_push(name: str, data: Any) -> None:
            client.events.clear()
            if name != "hotline.offer" or not isinstance(data, dict):
                return
            arrived = time.monotonic()
            call_id = str(data["call_id"])
            if call_id in self._offered:
                return  # rung again after a decline or timeout: measured once
            self._offered.add(call_id)
            placed = self._placed_at.get(str(data.get("kiosk_id")))
            if placed is not None:
                self._ctx.metrics.latency("dispatch_ms", (arrived - placed) * 1000)
            self._spawn(self._answer(client, call_id))

        return on_push

    async def _answer(self, client: HotlineClient, call_id: str) -> None:
        """Accept after the answer delay, talk, hang up, be available again."""
        ctx, spec = self._ctx, self._spec
        try:
            await asyncio.sleep(spec.answer_delay_seconds)
            await client.accept(call_id)
            ctx.metrics.count("calls_answered")
            if self._video is not None:
                self._spawn(self._media(client))
            await asyncio.sleep(spec.handle_seconds)
            await client.call("hotline.end")
            await client.available()
        except LoadtestError as exc:
            ctx.metrics.error(exc.code)

    async def _media(self, client: HotlineClient) -> None:
        try:
            await client.start_media()
        except LoadtestError as exc:
            self._ctx.metrics.error(exc.code)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
