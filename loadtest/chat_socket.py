"""A lean socket.io client for one namespace: engine.io v4 over a websocket, msgpack packets.

The chat benchmark drives tens of sockets at thousands of events per second from the same
2-core machine as the server, where python-socketio's client (a task per call, a queue and a
writer task per packet) cost more CPU than the server it measured. This client speaks the same
public wire (what any socket.io v5 client with the msgpack parser sends) with none of that:
calls are answered through callbacks run by the socket's one reader task, so a benchmark can
send its next message from the ack of the previous one. Binary packets are read in the
connection's parser call (websocket_inbox.py) when aiohttp allows it, so an ack or a push costs
no reader-task wake-up either; the reader task then only sees pings, the close and anything
that arrived before the namespace was joined.

Only what the benchmark needs: websocket transport from the start (no long-polling upgrade),
one namespace, events and acks without binary attachments, engine.io pings answered.

Concurrency: one asyncio loop; callbacks run on the reader task or in the connection's
`data_received`, and must neither block nor raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import msgspec

from careline.loadtest.errors import LoadtestError
from careline.loadtest.websocket_inbox import ClientInbox, install_inbox

log = logging.getLogger(__name__)

# socket.io packet types (protocol v5)
_CONNECT, _DISCONNECT, _EVENT, _ACK, _CONNECT_ERROR = 0, 1, 2, 3, 4
# engine.io text packets (protocol v4)
_EIO_OPEN, _EIO_CLOSE, _EIO_PING, _EIO_PONG = "0", "1", "2", "3"

#: Called with the ack's first argument (None for an empty ack).
AckCallback = Callable[[Any], None]
#: Called with an event's first argument.
EventHandler = Callable[[Any], None]


class _Packet(msgspec.Struct):
    """A socket.io packet; its arguments stay undecoded until their handler's type is known."""

    type: int
    nsp: str = "/"
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    id: int | None = None


_PACKET = msgspec.msgpack.Decoder(_Packet)
_ARGUMENTS = msgspec.msgpack.Decoder(list[msgspec.Raw])
_EVENT_NAME = msgspec.msgpack.Decoder(str)
_ANY: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder()
_ENCODER = msgspec.msgpack.Encoder()


class ChatSocketError(LoadtestError, ConnectionError):
    """The server refused the connection, or it ended while calls were unanswered."""

    code = "loadtest.socket"


class ChatSocket:
    """One connected socket of one namespace. `connect()`, then `call`/`on`, then `close()`.

    `close()` is safe twice. When the connection ends, every unanswered call's callback is
    dropped and `on_lost` (if set) is called once with how many were unanswered.
    """

    def __init__(self, namespace: str, *, read_from_parser: bool = True) -> None:
        self.namespace = namespace
        self._read_from_parser = read_from_parser
        self._inbox: ClientInbox | None = None
        self.on_lost: Callable[[int], None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._handlers: dict[str, tuple[EventHandler, msgspec.msgpack.Decoder[Any]]] = {}
        self._calls: dict[int, tuple[AckCallback, msgspec.msgpack.Decoder[Any]]] = {}
        self._next_id = 0
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def reads_from_parser(self) -> bool:
        """Whether binary packets are handled in the parser's call (not by the reader task)."""
        return self._inbox is not None and self._inbox.deliver is not None

    @property
    def pending(self) -> int:
        """Calls sent and not answered yet."""
        return len(self._calls)

    def on(self, event: str, handler: EventHandler, payload_type: Any = Any) -> None:
        """Call `handler` with the payload of every `event` the server sends, decoded as
        `payload_type` (a msgspec type: a Struct naming only the fields wanted is cheapest)."""
        self._handlers[event] = (handler, _decoder(payload_type))

    async def connect(self, http: aiohttp.ClientSession, url: str, auth: Any) -> None:
        """Open the websocket, pass the engine.io handshake and join the namespace with `auth`."""
        self._ws = ws = await http.ws_connect(socketio_url(url), autoping=True)
        try:
            opened = await ws.receive(timeout=30)
            if opened.type is not aiohttp.WSMsgType.TEXT or not opened.data.startswith(_EIO_OPEN):
                raise ChatSocketError("no engine.io open packet")
            # The server sends nothing more before it hears from us: a frame boundary.
            if self._read_from_parser:
                self._inbox = install_inbox(ws)
            await ws.send_bytes(self._packet(_CONNECT, auth))
            while True:
                reply = await ws.receive(timeout=30)
                if reply.type is aiohttp.WSMsgType.TEXT and reply.data == _EIO_PING:
                    await ws.send_str(_EIO_PONG)
                    continue
                if reply.type is not aiohttp.WSMsgType.BINARY:
                    raise ChatSocketError(f"connection to {self.namespace} ended during connect")
                packet = _PACKET.decode(reply.data)
                if packet.type == _CONNECT and packet.nsp == self.namespace:
                    break
                if packet.type == _CONNECT_ERROR:
                    reason = _ANY.decode(packet.data) if packet.data else None
                    raise ChatSocketError(f"connect to {self.namespace} refused: {reason}")
        except BaseException:
            await ws.close()
            raise
        if self._inbox is not None:
            self._inbox.deliver = self._deliver
        self._reader = asyncio.get_running_loop().create_task(
            self._read(ws), name=f"chat-socket-read{self.namespace}"
        )

    def call(self, event: str, data: Any, on_ack: AckCallback, ack_type: Any = Any) -> None:
        """Send `event` and have `on_ack` called with the server's ack, decoded as `ack_type`
        (from the reader task, or from the connection's parser call).

        Sending writes straight to the connection's transport (asyncio buffers what the kernel
        does not take at once); ChatSocketError if the socket is not connected.
        """
        ws = self._ws
        if ws is None or ws.closed:
            raise ChatSocketError("the socket is not connected")
        self._next_id = call_id = self._next_id + 1
        self._calls[call_id] = (on_ack, _decoder(ack_type))
        frame = _ENCODER.encode(
            {"type": _EVENT, "data": [event, data], "nsp": self.namespace, "id": call_id}
        )
        # aiohttp writes an uncompressed frame to the transport at once and only suspends for
        # flow control (its buffer over the high-water mark): no task in the common case.
        try:
            self._start(ws.send_bytes(frame))
        except (ConnectionError, RuntimeError) as exc:
            self._calls.pop(call_id, None)
            raise ChatSocketError(f"sending failed: {type(exc).__name__}") from None

    def _start(self, sending: Coroutine[Any, Any, None]) -> None:
        """Run `sending` up to its first suspension; a task owned by the socket finishes it."""
        try:
            waiting = sending.send(None)
        except StopIteration:
            return
        task = asyncio.get_running_loop().create_task(_finish(sending, waiting))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def close(self) -> None:
        """Leave the namespace and close the websocket; safe to call twice."""
        ws, self._ws = self._ws, None
        if self._inbox is not None:
            self._inbox.deliver = None
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(self._packet(_DISCONNECT, None))
            await ws.close()
        tasks = [*self._sending]
        reader, self._reader = self._reader, None
        if reader is not None:
            tasks.append(reader)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _packet(self, kind: int, data: Any) -> bytes:
        return _ENCODER.encode({"type": kind, "data": data, "nsp": self.namespace})

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            while True:
                message = await ws.receive()
                if message.type is aiohttp.WSMsgType.BINARY:
                    try:
                        self._dispatch(_PACKET.decode(message.data))
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        log.warning("a packet on %s was not understood: %s", self.namespace, exc)
                        return
                elif message.type is aiohttp.WSMsgType.TEXT:
                    if message.data == _EIO_PING:
                        await ws.send_str(_EIO_PONG)
                    elif message.data.startswith(_EIO_CLOSE):
                        return
                else:  # close, closing, closed or error
                    return
        finally:
            if self._inbox is not None:
                self._inbox.deliver = None
            unanswered = len(self._calls)
            self._calls.clear()
            if self.on_lost is not None:
                self.on_lost(unanswered)

    def _deliver(self, data: bytes) -> bool:
        """The inbox's hook: handle one binary packet in the parser's call. A packet that does
        not decode is declined, untouched, for the reader task to report."""
        try:
            self._dispatch(_PACKET.decode(data))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        return True

    def _dispatch(self, packet: _Packet) -> None:
        """Run the callback a packet is for. Everything is decoded before any state changes,
        so a packet that fails to decode leaves the socket as it was."""
        if packet.nsp != self.namespace:
            return
        kind = packet.type
        if kind == _DISCONNECT:
            log.info("the server disconnected a socket of %s", self.namespace)
            return
        if kind not in (_ACK, _EVENT):
            return
        arguments = _ARGUMENTS.decode(packet.data) if packet.data else []
        if kind == _ACK:
            call_id = packet.id if packet.id is not None else -1
            call = self._calls.get(call_id)
            if call is not None:
                on_ack, decoder = call
                value = decoder.decode(arguments[0]) if arguments else None
                del self._calls[call_id]
                on_ack(value)
        elif arguments:
            handler = self._handlers.get(_EVENT_NAME.decode(arguments[0]))
            if handler is not None:
                on_event, decoder = handler
                on_event(decoder.decode(arguments[1]) if len(arguments) > 1 else None)


_DECODERS: dict[Any, msgspec.msgpack.Decoder[Any]] = {Any: _ANY}


def _decoder(kind: Any) -> msgspec.msgpack.Decoder[Any]:
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.msgpack.Decoder(kind)
    return decoder


def socketio_url(url: str) -> str:
    """The engine.io v4 websocket endpoint of a server's base URL (http -> ws)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/") + "/socket.io/"
    return urlunsplit((scheme, parts.netloc, path, "EIO=4&transport=websocket", ""))


async def _finish(sending: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Drive a coroutine that suspended on `waiting` (a future, or None for a bare yield)."""
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
            log.info("a send failed: %s", type(exc).__name__)
            return
