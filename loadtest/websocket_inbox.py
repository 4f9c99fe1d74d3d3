"""Binary websocket messages of an aiohttp client websocket handed to a callback in the
parser's own call, without aiohttp's queue and a reader-task wake-up per message.

aiohttp's client parser puts every message in a queue and wakes the task blocked in
`receive()`: a future, a task step and several coroutine calls per message. On the machine
that also runs the server under test, that was a third of the load generator's CPU per
message in `careline bench chat`. `install_inbox` gives a connected client websocket a
`ClientInbox` (aiohttp's queue class, plus a `deliver` callback) and a fresh parser feeding it.
Each binary message is offered to `deliver` first when nothing waits in the queue ahead of it;
what it declines, text and control frames go through the queue and `receive()` as before, in
order.

The swap must happen at a frame boundary: the old parser may hold part of a frame, and nothing
outside it can tell. Callers install the inbox after the engine.io OPEN packet, which is the
only thing the server sends before it hears from the client, so the old parser has nothing
left. Relies on aiohttp 3.x internals (the response's `_reader` and `_parser`, the queue's
`_protocol` and `_buffer`, the connection protocol's `set_parser`); `install_inbox` returns
None when they are not there, and the websocket keeps reading through aiohttp.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import WSMsgType
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.client_proto import ResponseHandler
from aiohttp.helpers import DEFAULT_CHUNK_SIZE

#: Largest message the replacement parser accepts (aiohttp's ws_connect default).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class ClientInbox(WebSocketDataQueue):
    """aiohttp's queue of received websocket messages, which first offers each binary message
    to `deliver` when nothing waits in the queue ahead of it. `deliver` runs inside the
    connection's `data_received`: it must not block, and an exception it raises ends the
    connection (asyncio closes the transport)."""

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


def install_inbox(ws: aiohttp.ClientWebSocketResponse) -> ClientInbox | None:
    """Make `ws` read into a ClientInbox, or return None (nothing changed) when aiohttp is not
    the version this knows, the websocket is compressed, closed or sends heartbeats, or messages
    are queued.

    Call it only at a frame boundary (see the module docstring); `ws.receive()` keeps working
    and reads what the inbox queues.
    """
    old = getattr(ws, "_reader", None)
    protocol = getattr(old, "_protocol", None)
    if (
        ws.closed
        or ws.compress
        or getattr(ws, "_heartbeat", None) is not None
        or not isinstance(old, WebSocketDataQueue)
        or old.is_eof()
        or old._buffer
        or not hasattr(ws, "_parser")
        or not isinstance(protocol, ResponseHandler)
    ):
        return None
    inbox = ClientInbox(protocol, DEFAULT_CHUNK_SIZE, loop=ws._loop)
    parser = WebSocketReader(inbox, MAX_MESSAGE_BYTES, compress=False, decode_text=True)
    ws._reader = inbox
    ws._parser = parser
    protocol.set_parser(parser, inbox)
    return inbox
