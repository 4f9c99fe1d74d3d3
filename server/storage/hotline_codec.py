"""How hotline records are stored by every backend: msgpack of the domain dataclasses."""

from __future__ import annotations

import msgspec

from careline.signaling.hotline_call import Call
from careline.signaling.kiosk import Kiosk
from careline.signaling.presence import Presence

_encoder = msgspec.msgpack.Encoder()
_calls = msgspec.msgpack.Decoder(Call)
_presences = msgspec.msgpack.Decoder(Presence)
_kiosks = msgspec.msgpack.Decoder(Kiosk)
_skills = msgspec.msgpack.Decoder(tuple[str, ...])


def pack(record: Call | Presence | Kiosk | tuple[str, ...]) -> bytes:
    """The stored bytes of a record."""
    return _encoder.encode(record)


def unpack_call(data: bytes) -> Call:
    """A stored call."""
    return _calls.decode(data)


def unpack_presence(data: bytes) -> Presence:
    """A stored presence."""
    return _presences.decode(data)


def unpack_kiosk(data: bytes) -> Kiosk:
    """A stored kiosk."""
    return _kiosks.decode(data)


def unpack_skills(data: bytes) -> tuple[str, ...]:
    """Stored skills."""
    return _skills.decode(data)
