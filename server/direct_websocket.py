"""engine.io sockets that write packets straight to their websocket when nothing is queued.

engine.io queues every outbound packet for a writer task per connection, which wakes for each
one (a task and a timer per wake-up, and a pass of the event loop before the frame leaves).
Once a connection is a websocket, `DirectWebSocket` writes a packet from `send` itself when
nothing is queued ahead of it, and queues it as before otherwise, so packets keep their order.
A connection opened on the websocket (not upgraded from long-polling) also reads without a task
and a timer per packet. On every transport a message goes to `on_message` (the socket.io server's
event fast path) before engine.io's own dispatch, which would start a task per message. It relies on
engine.io 4's AsyncSocket internals; `direct_sockets_supported()` checks them, and without them
sockets stay engine.io's own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import engineio
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_socket import AsyncSocket

from careline.server.websocket_frames import FrameInbox, FrameWriter

log = logging.getLogger(__name__)


def direct_sockets_supported() -> bool:
    """Whether engine.io's AsyncSocket still has the internals DirectWebSocket builds on."""
    needed = (
        "send",
        "poll",
        "receive",
        "close",
        "check_ping_timeout",
        "_websocket_handler",
        "_upgrade_websocket",
    )
    return all(callable(getattr(AsyncSocket, name, None)) for name in needed) and callable(
        getattr(engineio.AsyncServer, "_handle_connect", None)
    )


class DirectWebSocket(AsyncSocket):  # type: ignore[misc]
    """An engine.io socket that writes packets straight to its websocket when it can.

    A packet goes straight out when the connection is an upgraded websocket, nothing waits in
    the queue, the writer task is idle and no earlier direct write waits for flow control; aiohttp
    then puts the frame in the transport's buffer at once. Otherwise it is queued as engine.io
    does. The writer task waits without a timeout once the connection is a websocket (its
    reader times dead clients out, and pings may now bypass the queue).
    """

    _direct: Any = None  # engine.io's websocket wrapper while the websocket handler runs
    _send_bytes: Callable[[bytes], Coroutine[Any, Any, None]] | None = None  # its binary send
    _frames: FrameWriter | None = None  # writes its binary frames without aiohttp's coroutines
    _writer_busy = False  # the writer took packets off the queue and is sending them
    _writing: asyncio.Task[None] | None = None  # a direct write waiting for flow control
    _waiting = False  # the reader loop waits for the next message (none is being handled)
    _last_read = 0.0  # loop time of the last message read (the reader loop's watchdog)
    #: Takes a message read from the websocket (engine.io sid, data) and returns whether it
    #: handled it; None, or False returned: engine.io's own dispatch (a task per message).
    on_message: Callable[[str, Any], bool] | None = None

    async def send(self, pkt: eio_packet.Packet) -> None:
        """Send a packet to the client: at once when nothing is ahead of it, else queued."""
        ws = self._direct
        if ws is None or not self.upgraded or self.upgrading:
            await super().send(pkt)
            return
        if not await self.check_ping_timeout():
            return
        if self._writer_busy or self._writing is not None or not self.queue.empty():
            await self.queue.put(pkt)
            return
        self._write(ws.send(pkt.encode()))

    def send_now(self, data: bytes) -> bool:
        """Write a binary message at once without a coroutine of its own, when `send` would
        write it directly; False: the caller must `await send(...)` (not a websocket yet,
        something queued, a write waiting for flow control, or a ping overdue). A closed
        socket drops it (True), as `send` does."""
        send_bytes = self._send_bytes
        if send_bytes is None or not self.upgraded or self.upgrading:
            return False
        if self.closed:
            return True
        last_ping = self.last_ping
        if last_ping and time.time() - last_ping > self.server.ping_timeout:
            return False  # `send` closes the socket
        if self._writer_busy or self._writing is not None or not self.queue.empty():
            return False
        frames = self._frames
        if frames is not None:
            try:
                if frames.write(data):
                    return True
            except ConnectionError as exc:
                # The connection is going away; its reader ends it, as the writer task would.
                log.debug("direct write to %s failed: %s", self.sid, type(exc).__name__)
                return True
        self._write(send_bytes(data))  # paused for flow control: aiohttp waits for the drain
        return True

    def _write(self, sending: Coroutine[Any, Any, None]) -> None:
        """Run a websocket write until it completes or waits for flow control; a write that
        waits finishes in a task that later packets queue behind."""
        try:
            waiting = sending.send(None)
        except StopIteration:
            return
        except (ConnectionError, RuntimeError) as exc:
            # The connection is going away; its reader ends it, as the writer task would.
            log.debug("direct write to %s failed: %s", self.sid, type(exc).__name__)
            return
        self._writing = asyncio.get_running_loop().create_task(_finish(sending, waiting))
        self._writing.add_done_callback(self._written)

    def _took_message(self, pkt: eio_packet.Packet) -> bool:
        """Whether `on_message` handled this packet (a message) itself."""
        on_message = self.on_message
        return (
            on_message is not None
            and pkt.packet_type == eio_packet.MESSAGE
            and on_message(self.sid, pkt.data)
        )

    async def receive(self, pkt: eio_packet.Packet) -> None:
        """A packet from the client (long-polling, or a websocket upgraded from it): a message
        goes to `on_message` first."""
        if not self._took_message(pkt):
            await super().receive(pkt)

    async def _serve_websocket(self, ws: Any) -> None:
        """engine.io's loop for a connection opened on the websocket, reading without a task and
        a timer per packet: it hands each packet to `receive`, closes the websocket when no frame
        came for ping interval + ping timeout (a watchdog timer re-armed from the time of the
        last frame), and at the end stops the writer and closes the socket. On an InboxResponse,
        binary messages that arrive while this loop waits go to `on_message` from the parser
        itself (`_deliver`), without passing through the loop."""
        self.connected = True
        self.upgraded = True
        loop = asyncio.get_running_loop()
        writer = loop.create_task(self._write_queued(ws))
        server = self.server
        limit = server.ping_interval + server.ping_timeout
        self._last_read = loop.time()
        closing: list[asyncio.Task[None]] = []
        watchdog: asyncio.TimerHandle | None = None

        def watch() -> None:
            nonlocal watchdog
            last_read = self._last_read
            if loop.time() - last_read < limit:
                watchdog = loop.call_at(last_read + limit, watch)
            else:
                log.info("engine.io socket %s: no frame within %.0f s, closing", self.sid, limit)
                closing.append(loop.create_task(ws.close()))

        watchdog = loop.call_at(self._last_read + limit, watch)
        inbox = getattr(getattr(ws, "_sock", None), "_reader", None)
        if isinstance(inbox, FrameInbox):
            inbox.deliver = self._deliver
        try:
            while True:
                self._waiting = True
                try:
                    data = await ws.wait()
                except Exception:  # noqa: BLE001 - as engine.io: close, broken socket
                    break
                finally:
                    self._waiting = False
                self._last_read = loop.time()
                if data is None or len(data) > server.max_http_buffer_size:
                    break
                try:
                    pkt = eio_packet.Packet(encoded_packet=data)
                except ValueError:
                    log.info("engine.io socket %s: undecodable frame, closing", self.sid)
                    break
                if self._took_message(pkt):
                    continue  # not through `receive`: no coroutine per message
                try:
                    await self.receive(pkt)
                except eio_exceptions.UnknownPacketError:
                    pass
                except eio_exceptions.SocketIsClosedError:
                    break
                except Exception:
                    log.exception("engine.io socket %s: receive error", self.sid)
        finally:
            if isinstance(inbox, FrameInbox):
                inbox.deliver = None
            if watchdog is not None:
                watchdog.cancel()
            await self.queue.put(None)  # the writer's end-of-stream mark
            await asyncio.gather(writer, *closing, return_exceptions=True)
            await self.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)

    def _deliver(self, data: bytes) -> bool:
        """A binary message straight from the parser (a FrameInbox's `deliver`): True when
        `on_message` took it; False queues it for the reader loop (which is busy with an
        earlier message, or must see this one: too large, or not for the fast path)."""
        if not self._waiting or len(data) > self.server.max_http_buffer_size:
            return False
        self._last_read = asyncio.get_running_loop().time()
        on_message = self.on_message
        if on_message is None:
            return False
        try:
            return on_message(self.sid, data)
        except Exception:
            log.exception("engine.io socket %s: message handling failed", self.sid)
            return True  # dropped, as a failed receive is

    async def _write_queued(self, ws: Any) -> None:
        """engine.io's writer task: send what `poll` returns, in order, until the end mark."""
        while True:
            packets = await self.poll()
            if not packets:
                break
            try:
                for pkt in packets:
                    await ws.send(pkt.encode())
            except (ConnectionError, RuntimeError, OSError) as exc:
                log.debug("engine.io socket %s: write failed: %s", self.sid, type(exc).__name__)
                break
        await ws.close()

    def _written(self, task: asyncio.Task[None]) -> None:
        if self._writing is task:
            self._writing = None

    async def poll(self) -> list[eio_packet.Packet]:
        """The writer task's wait for queued packets (after any direct write in progress)."""
        if self._direct is None or not self.upgraded:
            packets: list[eio_packet.Packet] = await super().poll()
            return packets
        self._writer_busy = False
        first = await self.queue.get()
        self.queue.task_done()
        packets = []
        if first is not None:
            packets.append(first)
            while not self.queue.empty():
                pkt = self.queue.get_nowait()
                self.queue.task_done()
                if pkt is None:
                    self.queue.put_nowait(None)
                    break
                packets.append(pkt)
        while self._writing is not None:
            await asyncio.wait([self._writing])
        self._writer_busy = bool(packets)
        return packets

    async def _websocket_handler(self, ws: Any) -> None:
        self._direct = ws
        # aiohttp's WebSocketResponse.send_bytes, without engine.io's wrapper (which inspects
        # its target on every call); any other websocket: the wrapper's send.
        response = getattr(ws, "_sock", None)
        self._send_bytes = getattr(response, "send_bytes", None) or ws.send
        self._frames = FrameWriter.of(response)
        try:
            if self.connected:
                # An upgrade from long-polling: engine.io's own probe handshake and loop.
                await super()._websocket_handler(ws)
            else:
                await self._serve_websocket(ws)
        finally:
            self._direct = None
            self._send_bytes = None
            self._frames = None
            writing, self._writing = self._writing, None
            if writing is not None:
                writing.cancel()
                await asyncio.gather(writing, return_exceptions=True)


async def _finish(sending: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Drive a write that suspended on `waiting` (a future, or None for a bare yield)."""
    try:
        while True:
            if isinstance(waiting, asyncio.Future):
                await asyncio.wait([waiting])
            else:
                await asyncio.sleep(0)
            try:
                waiting = sending.send(None)
            except StopIteration:
                return
    except (ConnectionError, RuntimeError) as exc:
        log.debug("direct write failed: %s", type(exc).__name__)
    finally:
        sending.close()
