"""Binary websocket frames written straight to an aiohttp websocket's transport, and read
straight from its parser.

aiohttp's `send_bytes` is a coroutine per frame (and `send_frame` one more) that a caller must
drive even when the frame goes out at once. For a server websocket without compression, a
binary frame is only its 2-10 byte header and the payload, so `FrameWriter.write` builds it and
hands it to the transport in one call: the same bytes aiohttp writes. It steps aside (returns
False, the caller then goes through aiohttp) whenever aiohttp's writer has something to do
beyond that: flow control (the transport's buffer is over its high-water mark, so the caller must
wait for it to drain). Compressed (permessage-deflate) and masked writers are never wrapped.

On the way in, aiohttp's parser puts every message in a queue, wakes the reader task blocked on
it, and the message comes out through `receive()`'s checks: a future, a task step and several
coroutine calls per message. An `InboxResponse` reads into a `FrameInbox`, which offers each
binary message to a callback in the parser's own call first (engine.io's socket, whose event fast
path starts the handler's task), and queues only what the callback declines. Both rely on aiohttp
3.x internals (its writer's attributes, its queue and parser classes, the request handler's
parser slot); `FrameWriter.of` and `inbox_supported()` check for them, and without them frames
go through aiohttp's own code.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web, web_protocol
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.helpers import DEFAULT_CHUNK_SIZE
from engineio.async_drivers.aiohttp import WebSocket as EngineIoWebSocket

_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack
#: FIN + binary opcode: a whole binary message in one frame.
_BINARY = 0x82


class FrameWriter:
    """Writes whole binary frames of one uncompressed server websocket (aiohttp's writer)."""

    __slots__ = ("_protocol", "_transport", "_writer")

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self._transport = writer.transport
        self._protocol = writer.protocol

    @classmethod
    def of(cls, response: Any) -> FrameWriter | None:
        """A FrameWriter for an aiohttp WebSocketResponse, or None when its frames must go
        through aiohttp (compressed or masked, or aiohttp's writer is not the one this knows)."""
        writer = getattr(response, "_writer", None)
        if writer is None or not all(
            hasattr(writer, name)
            for name in ("transport", "protocol", "compress", "use_mask", "_closing")
        ):
            return None
        if writer.compress or writer.use_mask:
            return None
        if not hasattr(writer.protocol, "writing_paused"):
            return None
        return cls(writer)

    def write(self, data: bytes) -> bool:
        """Write `data` as one binary frame now and return True; False (nothing written): the
        transport is paused for flow control, send through aiohttp. Raises ConnectionResetError
        when the websocket is closing, as aiohttp does."""
        if self._protocol.writing_paused:
            return False
        transport = self._transport
        if self._writer._closing or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        size = len(data)
        if size < 126:
            transport.write(bytes((_BINARY, size)) + data)
        elif size < 65536:
            transport.write(_LEN2(_BINARY, 126, size) + data)
        else:
            transport.write(_LEN3(_BINARY, 127, size))
            transport.write(data)
        return True


class FrameInbox(WebSocketDataQueue):
    """aiohttp's queue of received websocket messages, which first offers each binary message
    to `deliver` when nothing waits in the queue ahead of it: a message `deliver` takes is
    handled in the parser's own call, without a queue entry, a future and a reader-task wake-up
    per message. Anything else (text, control frames, messages `deliver` declines, anything
    while earlier messages are still queued) is queued as aiohttp does."""

    #: Takes a binary message's payload and returns whether it handled it; None: queue all.
    deliver: Callable[[bytes], bool] | None = None

    def feed_data(self, data: Any, size: int) -> None:
        """The parser's hand-over of one message (aiohttp's WSMessage) of `size` bytes."""
        deliver = self.deliver
        if (
            deliver is not None
            and data.type is WSMsgType.BINARY
            and not self._buffer
            and deliver(data.data)
        ):
            return
        super().feed_data(data, size)


class InboxResponse(web.WebSocketResponse):
    """aiohttp's server websocket, reading into a FrameInbox.

    aiohttp makes its queue and parser when the handshake completes; this replaces them at that
    moment with a FrameInbox and a parser feeding it (same limits and options). When bytes
    arrived with the handshake itself, aiohttp's parser already holds them and is kept (the
    connection then reads through its queue only).
    """

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        handler = request.protocol
        early = bool(getattr(handler, "_message_tail", b""))
        super()._post_start(request, protocol, writer)
        loop = self._loop
        if early or loop is None or getattr(handler, "_payload_parser", None) is not self._parser:
            return
        inbox = FrameInbox(handler, DEFAULT_CHUNK_SIZE, loop=loop)
        parser = WebSocketReader(
            inbox, self._max_msg_size, compress=bool(self._compress), decode_text=self._decode_text
        )
        handler._payload_parser = None
        handler.set_parser(parser, data_received_cb=handler._data_received_cb)
        self._reader, self._parser = inbox, parser


class InboxWebSocket(EngineIoWebSocket):  # type: ignore[misc]
    """engine.io's aiohttp websocket wrapper, on an InboxResponse (engine.io's own keeps the
    request's WSGI-style mapping too, which neither engine.io nor python-socketio reads)."""

    async def __call__(self, request_env: dict[str, Any]) -> web.StreamResponse:
        request = request_env["aiohttp.request"]
        self._sock = InboxResponse(max_msg_size=self.server.max_http_buffer_size)
        await self._sock.prepare(request)
        await self.handler(self)
        return self._sock


def inbox_supported() -> bool:
    """Whether aiohttp and engine.io still have what InboxResponse and InboxWebSocket use."""
    return (
        callable(getattr(web.WebSocketResponse, "_post_start", None))
        and callable(getattr(web_protocol.RequestHandler, "set_parser", None))
        and {"_message_tail", "_payload_parser", "_data_received_cb"}
        <= set(getattr(web_protocol.RequestHandler, "__slots__", ()))
        and "__call__" in vars(EngineIoWebSocket)
        and callable(getattr(EngineIoWebSocket, "wait", None))
    )
