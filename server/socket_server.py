"""The socket.io server: msgpack packets, and a client sending undecodable packets is dropped.

python-socketio logs a full traceback for every packet its serializer cannot decode (a client
using the JSON text parser against this msgpack server, or junk), so one misconfigured or hostile
client could flood the log. Here such a packet closes that client's connection with one line.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from socketio.msgpack_packet import MsgPackPacket

log = logging.getLogger(__name__)


class UndecodablePacket(ValueError):
    """A socket.io packet that is not a msgpack map of the expected shape."""


class StrictMsgPackPacket(MsgPackPacket):  # type: ignore[misc]
    """msgpack packets whose decoding failures are one named error."""

    def decode(self, encoded_packet: Any) -> Any:
        """Decode, or raise UndecodablePacket."""
        if not isinstance(encoded_packet, bytes | bytearray):
            raise UndecodablePacket("text frame on a msgpack connection")
        try:
            return super().decode(encoded_packet)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UndecodablePacket(type(exc).__name__) from None


class SocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """AsyncServer (aiohttp mode, msgpack) that disconnects clients sending undecodable packets."""

    def __init__(self, max_http_buffer_size: int) -> None:
        super().__init__(
            async_mode="aiohttp",
            serializer=StrictMsgPackPacket,
            logger=False,
            engineio_logger=False,
            max_http_buffer_size=max_http_buffer_size,
        )
        self.dropped_undecodable = 0

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except UndecodablePacket as exc:
            self.dropped_undecodable += 1
            log.info("dropped connection %s: undecodable packet (%s)", eio_sid, exc)
            await self.eio.disconnect(eio_sid)
