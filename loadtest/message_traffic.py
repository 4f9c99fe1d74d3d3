"""Message-visit traffic: families writing in threads their clinician picked up, over /threads.

Setup over HTTP: each family (one per sender) opens its share of the threads
(`POST /api/threads`) and its clinician picks them up (`POST /api/threads/{id}/assign`). Then
each family's device writes at `rate_per_second / senders`, in its threads in turn, without
waiting for acks (an open loop, so a slow server shows as latency, not as a lower rate); an
`attachment_share` of the messages first uploads a small PNG and sends it by id.

Measured on this process's monotonic clock: the ack latency of `thread.send` (the write is
durable when it is acked), and the fan-out latency to the clinician's device (`thread.message`
push), matched by client_msg_id. The lean ChatSocket client keeps the generator cheap.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import msgspec

from careline.loadtest.chat_socket import ChatSocket, ChatSocketError
from careline.loadtest.errors import LoadtestError
from careline.loadtest.scenario import MessageTraffic
from careline.loadtest.traffic_context import TrafficContext

log = logging.getLogger(__name__)

NAMESPACE = "/threads"
#: Messages whose push is still awaited, per sender (the oldest are forgotten beyond it).
IN_FLIGHT_LIMIT = 10_000
_DRAIN_SECONDS = 5.0


def tiny_png() -> bytes:
    """A valid 1x1 grey PNG (what the server's type sniffing accepts as an image)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


_PNG = tiny_png()


class _ErrorInfo(msgspec.Struct):
    code: str = "unknown"


class _Ack(msgspec.Struct):
    ok: bool = False
    error: _ErrorInfo | None = None


class _Pushed(msgspec.Struct):
    client_msg_id: str


class _Push(msgspec.Struct):
    message: _Pushed


class _Family:
    """One family's sending device and its clinician's device."""

    def __init__(self, ctx: TrafficContext, index: int, text: str) -> None:
        self.ctx = ctx
        self.index = index
        self.text = text
        self.family_sub = f"lt-{ctx.run_id}-fam{index}"
        self.clinician_sub = f"lt-{ctx.run_id}-doc{index}"
        self.thread_ids: list[str] = []
        self.sender = ChatSocket(NAMESPACE)
        self.clinician = ChatSocket(NAMESPACE)
        self.in_flight: OrderedDict[str, float] = OrderedDict()
        self.sent = 0
        self.parent_token = ""

    def on_push(self, push: _Push) -> None:
        sent = self.in_flight.pop(push.message.client_msg_id, None)
        if sent is not None:
            self.ctx.metrics.latency("fanout_ms", (time.monotonic() - sent) * 1000)

    def send(self, attachment_id: str | None) -> None:
        ctx = self.ctx
        n = self.sent
        self.sent += 1
        cmid = f"lt-{self.index}-{n}"
        payload: dict[str, Any] = {
            "thread_id": self.thread_ids[n % len(self.thread_ids)],
            "client_msg_id": cmid,
            "text": self.text,
        }
        if attachment_id is not None:
            payload["attachment_ids"] = [attachment_id]
            ctx.metrics.count("attachments_sent")
        started = time.monotonic()
        self.in_flight[cmid] = started
        while len(self.in_flight) > IN_FLIGHT_LIMIT:
            self.in_flight.popitem(last=False)

        def acked(reply: _Ack | None) -> None:
            if reply is not None and reply.ok:
                ctx.metrics.count("messages_acked")
                ctx.metrics.latency("chat_ack_ms", (time.monotonic() - started) * 1000)
            else:
                self.in_flight.pop(cmid, None)
                error = None if reply is None else reply.error
                ctx.metrics.error("bad_ack" if error is None else error.code)

        try:
            self.sender.call("thread.send", payload, acked, ack_type=_Ack | None)
        except ChatSocketError as exc:
            self.in_flight.pop(cmid, None)
            ctx.metrics.error(exc.code)
            return
        ctx.metrics.count("messages_sent")


class MessageVisits:
    """Runs the families given to this process (`families` are global sender numbers)."""

    def __init__(
        self, ctx: TrafficContext, spec: MessageTraffic, families: Sequence[int], seed: int
    ) -> None:
        self._ctx = ctx
        self._spec = spec
        self._families = [_Family(ctx, index, "x" * spec.text_bytes) for index in families]
        self._seed = seed

    async def run(self) -> None:
        """Set up, write until the run ends, wait for the last acks, close every socket."""
        try:
            await asyncio.gather(*(self._set_up(family) for family in self._families))
            await asyncio.gather(*(self._write(family) for family in self._families))
            await self._drain()
        finally:
            for family in self._families:
                await family.sender.close()
                await family.clinician.close()

    async def _set_up(self, family: _Family) -> None:
        ctx, spec = self._ctx, self._spec
        parent = await ctx.tokens.token("parent", family.family_sub)
        doctor = await ctx.tokens.token("clinician", family.clinician_sub)
        for n in range(family.index, spec.threads, spec.senders):
            body = {"patient_ref": f"lt-pat-{n}", "client_thread_id": f"lt-{ctx.run_id}-{n}"}
            created = await ctx.post("/api/threads", parent, body)
            thread_id = str(created["thread"]["thread_id"])
            await ctx.post(f"/api/threads/{thread_id}/assign", doctor, {})
            family.thread_ids.append(thread_id)
        family.clinician.on("thread.message", family.on_push, payload_type=_Push)
        await family.clinician.connect(ctx.http, ctx.url, {"token": doctor})
        await family.sender.connect(ctx.http, ctx.url, {"token": parent})
        family.parent_token = parent

    async def _write(self, family: _Family) -> None:
        ctx, spec = self._ctx, self._spec
        interval = spec.senders / spec.rate_per_second
        # Spread the families' first sends over one interval; a sender's own seed decides
        # which of its messages carry a photo, so a run is reproducible.
        next_at = time.monotonic() + interval * family.index / spec.senders
        rng = random.Random(self._seed * 1_000_003 + family.index)
        while await ctx.sleep_until(next_at) and time.monotonic() < ctx.ends_at:
            next_at += interval
            attachment = None
            if rng.random() < spec.attachment_share:
                attachment = await self._upload(family, family.parent_token)
            family.send(attachment)

    async def _upload(self, family: _Family, token: str) -> str | None:
        thread_id = family.thread_ids[family.sent % len(family.thread_ids)]
        try:
            reply = await self._ctx.post(f"/api/threads/{thread_id}/attachments", token, raw=_PNG)
        except LoadtestError as exc:
            self._ctx.metrics.error(exc.code)
            return None
        return str(reply["attachment_id"])

    async def _drain(self) -> None:
        for _ in range(int(_DRAIN_SECONDS / 0.05)):
            if not any(f.sender.pending or f.in_flight for f in self._families):
                break
            await asyncio.sleep(0.05)
        for family in self._families:
            if family.sender.pending:
                self._ctx.metrics.error("loadtest.ack_missing", family.sender.pending)
            if family.in_flight:
                self._ctx.metrics.error("loadtest.push_missing", len(family.in_flight))
