"""The socket.io server: msgpack packets, lean emits, and undecodable packets drop their client.

python-socketio logs a full traceback for every packet its serializer cannot decode (a client
using the JSON text parser against this msgpack server, or junk), so one misconfigured or hostile
client could flood the log. Here such a packet closes that client's connection with one line.

python-socketio's emit to a room starts a task per recipient and waits for all of them; on this
single-node server (no client manager queue) an emit here encodes the packet once and hands it
to each recipient's engine.io socket in turn: same packets, same order.

Connections that became websockets write through `DirectWebSocket` (direct_websocket.py), and
the events they send take a fast path: python-socketio starts a task per message in engine.io,
decodes the packet, logs, looks the handler up and starts another task per event; here an EVENT
from any transport is decoded by msgspec and its namespace's handler runs in one task, whose
ack is encoded once and written straight to the websocket (queued, on long-polling). Other
packets (connects, disconnects, acks from clients) go python-socketio's way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import socketio
from engineio import packet as eio_packet
from engineio.async_socket import AsyncSocket
from socketio import packet as sio_packet
from socketio.msgpack_packet import MsgPackPacket

from careline.server.direct_websocket import DirectWebSocket, direct_sockets_supported
from careline.server.websocket_frames import InboxWebSocket, inbox_supported

log = logging.getLogger(__name__)


class UndecodablePacket(ValueError):
    """A socket.io packet that is not a msgpack map of the expected shape."""


_ENCODER = msgspec.msgpack.Encoder()
#: packet types whose data may be absent (socket.io v5)
_NO_DATA_TYPES = frozenset({sio_packet.CONNECT, sio_packet.DISCONNECT})


class _InboundPacket(msgspec.Struct):
    """The keys of a socket.io msgpack packet the event fast path reads."""

    type: int
    nsp: str
    data: Any = None
    id: int | None = None


_DECODER = msgspec.msgpack.Decoder(_InboundPacket)


class StrictMsgPackPacket(MsgPackPacket):  # type: ignore[misc]
    """msgpack packets whose decoding failures are one named error, encoded by msgspec (the same
    msgpack for plain values, several times faster, and msgspec Structs are accepted)."""

    def encode(self) -> bytes:
        """Encode the packet for transmission. A CONNECT or DISCONNECT without data carries no
        `data` key: the JavaScript msgpack parser rejects a DISCONNECT whose data is nil (the
        page then saw a "parse error" and reconnected instead of obeying the server)."""
        fields = self._to_dict()
        if fields["data"] is None and self.packet_type in _NO_DATA_TYPES:
            del fields["data"]
        return _ENCODER.encode(fields)

    def decode(self, encoded_packet: Any) -> Any:
        """Decode, or raise UndecodablePacket."""
        if not isinstance(encoded_packet, bytes | bytearray):
            raise UndecodablePacket("text frame on a msgpack connection")
        try:
            return super().decode(encoded_packet)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UndecodablePacket(type(exc).__name__) from None


def origin_check(
    allowed_origins: Sequence[str],
) -> Callable[[str | None, dict[str, Any]], bool]:
    """engine.io's origin check: the server's own origin (engine.io's default: the request's
    scheme and Host, or its X-Forwarded-Proto/-Host) plus `allowed_origins` (pages served by
    another address, e.g. a proxy in front of several nodes; `cluster.allowed_origins`)."""
    extra = frozenset(origin.rstrip("/").lower() for origin in allowed_origins)

    def allowed(origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None:  # engine.io also asks while building headers of same-origin requests
            return False
        if origin.lower() in extra:
            return True
        scheme = environ.get("wsgi.url_scheme", "http")
        host = environ.get("HTTP_HOST")
        own = {f"{scheme}://{host}"} if host else set()
        if "HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_HOST" in environ:
            proto = environ.get("HTTP_X_FORWARDED_PROTO", scheme).split(",")[0].strip()
            forwarded = environ.get("HTTP_X_FORWARDED_HOST", host or "").split(",")[0].strip()
            own.add(f"{proto}://{forwarded}")
        return origin in own

    return allowed


class SocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """AsyncServer (aiohttp mode, msgpack) that disconnects clients sending undecodable packets.

    Connections from pages of another origin (socket.io's CORS) are accepted only from
    `allowed_origins`; without any, only same-origin pages connect (engine.io's default).
    """

    def __init__(self, max_http_buffer_size: int, allowed_origins: Sequence[str] = ()) -> None:
        super().__init__(
            async_mode="aiohttp",
            serializer=StrictMsgPackPacket,
            logger=False,
            engineio_logger=False,
            max_http_buffer_size=max_http_buffer_size,
            cors_allowed_origins=origin_check(allowed_origins) if allowed_origins else None,
        )
        self.dropped_undecodable = 0
        self._direct_sockets = direct_sockets_supported()
        if not self._direct_sockets:
            log.warning("engine.io internals changed: sockets write through their queue")
        elif inbox_supported() and isinstance(getattr(self.eio, "_async", None), dict):
            # Websockets read into a FrameInbox (websocket_frames.py); an instance copy of
            # engine.io's driver table, which is shared by every engine.io server.
            self.eio._async = {**self.eio._async, "websocket": InboxWebSocket}
        else:
            log.warning("aiohttp internals changed: websockets read through their queue")
        self._events: set[asyncio.Task[None]] = set()
        self.direct_events = 0  # events that took the fast path

    async def _handle_eio_connect(self, eio_sid: str, environ: Any) -> None:
        sock = self.eio.sockets.get(eio_sid)
        if self._direct_sockets and type(sock) is AsyncSocket:
            sock.__class__ = DirectWebSocket
            sock.on_message = self._direct_message
        await super()._handle_eio_connect(eio_sid, environ)

    def _direct_message(self, eio_sid: str, data: Any) -> bool:
        """The event fast path: start the handler of an EVENT packet in one task and return
        True; False leaves the message to python-socketio (any other packet, or one this path
        cannot read: python-socketio then decodes it, or drops its client, as before)."""
        if not isinstance(data, bytes) or eio_sid in self._binary_packet:
            return False
        try:
            pkt = _DECODER.decode(data)
        except msgspec.DecodeError:
            return False
        args = pkt.data
        namespace = pkt.nsp or "/"
        if (
            pkt.type != sio_packet.EVENT
            or type(args) is not list
            or not args
            or type(args[0]) is not str
            or self.handlers.get(namespace)
        ):
            return False
        handler = self.namespace_handlers.get(namespace)
        if handler is None:
            return False
        manager = self.manager
        sid = manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not manager.is_connected(sid, namespace):
            return True  # python-socketio drops it too
        task = asyncio.get_running_loop().create_task(
            self._run_event(handler, sid, eio_sid, namespace, pkt.id, args)
        )
        self._events.add(task)
        task.add_done_callback(self._events.discard)
        self.direct_events += 1
        return True

    async def _run_event(
        self,
        handler: Any,
        sid: str,
        eio_sid: str,
        namespace: str,
        ack_id: int | None,
        args: list[Any],
    ) -> None:
        """Run one event's namespace handler and send its ack (python-socketio's shapes)."""
        try:
            reply = await handler.trigger_event(args[0], sid, *args[1:])
        except Exception:
            log.exception("event handler of namespace %s failed", namespace)
            return
        if ack_id is None or reply is self.not_handled:
            return
        data = [] if reply is None else list(reply) if isinstance(reply, tuple) else [reply]
        encoded = _ENCODER.encode(
            {"type": sio_packet.ACK, "nsp": namespace, "data": data, "id": ack_id}
        )
        await self._send_encoded(eio_sid, encoded)

    async def _send_encoded(self, eio_sid: str, encoded: bytes) -> None:
        """Send an encoded socket.io packet: written at once when the socket can, else queued."""
        sock = self.eio.sockets.get(eio_sid)
        if sock is None:
            return
        if type(sock) is DirectWebSocket and sock.send_now(encoded):
            return
        await sock.send(eio_packet.Packet(eio_packet.MESSAGE, encoded))

    async def cancel_events(self) -> None:
        """Cancel the handlers of events still running (at shutdown, after the namespaces)."""
        for task in list(self._events):
            task.cancel()
        await asyncio.gather(*self._events, return_exceptions=True)

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: Any = None,
        room: Any = None,
        skip_sid: str | list[str] | None = None,
        namespace: str | None = None,
        callback: Any = None,
        ignore_queue: bool = False,
    ) -> None:
        """Send `event` to a socket id, a room or a list of rooms (python-socketio's emit).

        Without a callback and with the in-process client manager, the packet is encoded once
        and queued for each recipient without a task per recipient; otherwise python-socketio
        emits it (callbacks need a packet id per recipient, a queue-backed manager other nodes).
        """
        manager = self.manager
        if callback is not None or type(manager) is not socketio.AsyncManager:
            # Plain values for msgpack-python and a queue-backed manager; a tuple stays a tuple
            # (python-socketio sends its items as separate arguments).
            plain = msgspec.to_builtins(data)
            data = tuple(plain) if isinstance(data, tuple) else plain
            await super().emit(event, data, to, room, skip_sid, namespace, callback, ignore_queue)
            return
        namespace = namespace or "/"
        if namespace not in manager.rooms:
            return
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        encoded = _ENCODER.encode(
            {"type": sio_packet.EVENT, "nsp": namespace, "data": [event, *args]}
        )
        skipped = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        for sid, eio_sid in manager.get_participants(namespace, to or room):
            if sid not in skipped:
                await self._send_encoded(eio_sid, encoded)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except UndecodablePacket as exc:
            self.dropped_undecodable += 1
            log.info("dropped connection %s: undecodable packet (%s)", eio_sid, exc)
            await self.eio.disconnect(eio_sid)
